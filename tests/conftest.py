"""Shared fixtures: one local Ray session, one moto S3 server, generated media.

Ray: ``ray.init(num_cpus=4)`` once per test run (4 logical CPUs on 2 cores, so that pipeline
stages, actor pools and trainers all get slots). S3: moto's standalone server on 127.0.0.1 with
``AWS_ENDPOINT_URL`` pointing at it, so the code under test uses its ordinary boto3/pyarrow paths.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from sound_captions.testing.media import make_corrupt, make_media


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A skipped test is fine on a laptop but hides a broken setup in CI: there it fails."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail") and "gpu" not in item.keywords:
        report.outcome = "failed"
        report.longrepr = f"skipped in CI (CI is set): {report.longrepr}"


@pytest.fixture(scope="session")
def ray_session(s3_server):
    """The one Ray session of the test run (started after the S3 server, so that its workers
    inherit ``AWS_ENDPOINT_URL`` and the test credentials)."""
    import ray

    os.environ.setdefault("RAY_ACCEPT_CLUSTER_CONFIG_WITHOUT_AUTH", "1")
    if not ray.is_initialized():
        from sound_captions.cli import use_local_ray_env

        use_local_ray_env()  # as the CLI's local Ray has it
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, object_store_memory=1_500_000_000)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
    yield ray
    ray.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """moto's standalone S3 server on loopback; yields its endpoint URL and sets AWS_* env."""
    port = _free_port()
    moto = shutil.which("moto_server", path=os.path.dirname(sys.executable)) or shutil.which("moto_server")
    cmd = [moto] if moto else [sys.executable, "-m", "moto.server"]
    proc = subprocess.Popen([*cmd, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("moto_server exited at start") from None
            time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError("moto_server did not start within 30 s")
    saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1"
    )
    yield endpoint
    proc.terminate()
    proc.wait(timeout=10)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture()
def s3_bucket(s3_server):
    """A fresh bucket (names must be at least 3 characters for moto)."""
    from sound_captions import storage

    name = f"sc-test-{uuid.uuid4().hex[:10]}"
    storage.s3_client().create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    """A few generated media files shared by the tests that only read them."""
    root = tmp_path_factory.mktemp("media")
    make_media(root / "beep-music.mp4", [("beep", 3), ("music", 3)], seed=1)
    make_media(root / "noise.mkv", [("noise", 2)], seed=2)
    make_media(root / "tone.wav", [("beep", 2)], seed=3)
    make_media(root / "clip.webm", [("music", 2)], seed=4)
    make_media(root / "no-audio.mp4", [("beep", 2)], audio=False)
    make_corrupt(root / "corrupt.mp4")
    return root
