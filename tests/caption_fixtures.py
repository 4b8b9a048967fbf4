"""Helpers shared by the caption tests: one tiny trained bundle per test run, a generated
library with known per-second truth, and a per-second comparison of a .vtt with that truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sound_captions.demo import vtt_activity
from sound_captions.testing.bundles import LABELS, train_tiny_bundle
from sound_captions.testing.media import make_corrupt, make_media, per_second_truth

_BUNDLES: dict[int, Path] = {}

# rel path (without suffix) → (suffix, segments). Same-kind segments are never 1 s apart.
LIBRARY: dict[str, tuple[str, list[tuple[str, int]]]] = {
    "a/one": (".mp4", [("silence", 2), ("beep", 5), ("music", 6), ("noise", 4), ("silence", 2)]),
    "a/deeper/two": (".mkv", [("music", 5), ("silence", 3), ("noise", 5)]),
    "three": (".m4a", [("noise", 4), ("beep", 4), ("silence", 3), ("music", 4)]),
}
BAD = {"bad/corrupt": "decode_error", "bad/no-audio": "no_audio", "bad/empty": "empty"}


def tiny_bundle(root: Path, seed: int = 0) -> Path:
    """A bundle trained once per test run and seed (reused by every module that asks)."""
    if seed not in _BUNDLES:
        path = root / f"tiny-{seed}.bundle"
        bundle = train_tiny_bundle(path, seed)
        assert bundle.metrics["train_accuracy"] > 0.95, bundle.metrics
        _BUNDLES[seed] = path
    return _BUNDLES[seed]


def make_library(root: Path, *, bad: bool = True, seed: int = 100) -> dict[str, list[tuple[str, ...]]]:
    """Write LIBRARY (+ the bad inputs) below ``root``; return rel → per-second truth."""
    truth = {}
    for index, (rel, (suffix, segments)) in enumerate(LIBRARY.items()):
        make_media(root / (rel + suffix), segments, seed=seed + index)
        truth[rel] = per_second_truth(segments)
    if bad:
        make_corrupt(root / "bad" / "corrupt.mp4")
        make_media(root / "bad" / "no-audio.mp4", [("beep", 2)], audio=False)
        (root / "bad" / "empty.mp4").write_bytes(b"")
    return truth


def agreement(vtt_text: str, truth: list[tuple[str, ...]], caption_text: dict[str, str]) -> float:
    """Fraction of (second, label) cells where the captions a viewer sees match the truth."""
    labels = list(LABELS)
    seen = vtt_activity(vtt_text, {t: m for m, t in caption_text.items()}, labels, len(truth))
    expected = np.array([[m in present for m in labels] for present in truth], dtype=bool)
    return float((seen == expected).mean())
