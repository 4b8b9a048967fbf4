"""Training with Ray Train on generated shards: two CPU workers, a bundle that captions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sound_captions.bundle import load_bundle
from sound_captions.dataset.build import BuildOptions, build_dataset
from sound_captions.sources.manifest import read_manifest, write_manifest
from sound_captions.testing.media import make_media
from sound_captions.train import BUNDLE_NAME, METRICS_NAME, TrainConfig, train


@pytest.fixture(scope="module")
def small_dataset(ray_session, tmp_path_factory):
    root = tmp_path_factory.mktemp("train-data")
    rows = []
    names = {"beep": "Beep, bleep", "music": "Music", "noise": "White noise"}
    seed = 100
    for kind, name in names.items():
        for i in range(6):
            seed += 1
            make_media(root / "clips" / f"{kind}{i}.wav", [(kind, 3)], seed=seed)
            rows.append((f"clips/{kind}{i}.wav", None, None, [name]))
    for i in range(3):
        make_media(root / "clips" / f"silence{i}.wav", [("silence", 3)], seed=i)
        rows.append((f"clips/silence{i}.wav", None, None, []))
    write_manifest(rows, str(root / "manifest.csv"))
    requests, failures = read_manifest(str(root / "manifest.csv"))
    build_dataset(requests, str(root / "dataset"), BuildOptions(split_fractions=(0.6, 0.4, 0.0), seed=1), source_failures=failures)
    return root / "dataset"


@pytest.mark.ray
@pytest.mark.slow
def test_two_cpu_workers_train_a_usable_bundle(small_dataset, tmp_path):
    out = tmp_path / "run"
    bundle = train(
        TrainConfig(
            data=str(small_dataset), out=str(out), model="compact", epochs=12, batch_size=8, learning_rate=3e-3,
            workers=2, cpus_per_worker=1, patience=0, max_failures=0, seed=3,
        ),
        name="two-workers",
    )
    history = [json.loads(line) for line in (out / METRICS_NAME).read_text().splitlines()]
    assert [h["epoch"] for h in history] == list(range(12))
    # Chance mAP is the share of positive windows per label: about 0.3 here.
    assert max(h["valid_map"] for h in history) > 0.65
    loaded = load_bundle(str(out / BUNDLE_NAME))
    assert loaded.digest() == bundle.digest()
    assert loaded.labels == ["/m/04rlf", "/m/02fs_r", "/m/0chx_"]
    assert loaded.caption_text["/m/02fs_r"] == "[beeping]"
    assert all(0.0 < t < 1.0 for t in loaded.thresholds.values())
    assert np.isfinite(loaded.metrics["best_valid_map"])
