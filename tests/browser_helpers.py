"""Drive Debian's Chromium (``/usr/bin/chromium``) headless through Playwright's CDP driver.

No browser is downloaded: Playwright launches the system binary (``executable_path``). Without
a browser or the playwright package a browser test is skipped locally and *fails* when ``CI``
is set, so a CI run cannot pass by skipping. ``.ci/install-browser.sh`` installs the browser.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("SOUND_CAPTIONS_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--autoplay-policy=no-user-gesture-required",
]
REPO_ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO_ROOT / "artifacts"


def require_browser() -> None:
    """Skip (locally) or fail (with ``CI`` set) when the browser test cannot run here."""
    problem = None
    if not CHROMIUM.exists():
        problem = f"{CHROMIUM} is missing: run .ci/install-browser.sh (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "the playwright package is not installed (pip install playwright)"
    if problem is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"browser test cannot run in CI: {problem}")
    pytest.skip(problem)


@contextmanager
def chromium_browser() -> Iterator[object]:
    """A headless Chromium ``Browser`` (Playwright), closed on exit."""
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser, path: Path):
    """Open a local HTML file in a fresh 1100×900 page (device scale 1) and collect JS errors.

    The page's uncaught errors are in ``page.js_errors``; tests assert it stays empty.
    """
    context = browser.new_context(viewport={"width": 1100, "height": 900}, device_scale_factor=1)
    page = context.new_page()
    page.js_errors = []
    page.on("pageerror", lambda exc: page.js_errors.append(str(exc)))
    page.goto(path.resolve().as_uri())
    return page


def save_screenshot(page, *paths: Path) -> None:
    """Save one full-page screenshot to every given path (folders created)."""
    png = page.screenshot(full_page=True)
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)
