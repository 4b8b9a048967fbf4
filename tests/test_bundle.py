"""The model bundle: one file, weights_only-loadable, same scores in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from sound_captions.bundle import BundleError, ModelBundle, load_bundle, save_bundle
from sound_captions.features import FeatureConfig
from sound_captions.models import build_model


def _bundle(seed: int = 0) -> ModelBundle:
    torch.manual_seed(seed)
    model = build_model("compact", 3, (1, 128, 128))
    return ModelBundle(
        architecture="compact", hparams={}, state_dict=model.state_dict(), labels=["/m/02fs_r", "/m/04rlf", "/m/0chx_"],
        label_names={"/m/02fs_r": "Beep, bleep", "/m/04rlf": "Music", "/m/0chx_": "White noise"},
        caption_text={"/m/02fs_r": "[beeping]", "/m/04rlf": "[music]"}, thresholds={"/m/02fs_r": 0.4, "/m/04rlf": 0.5, "/m/0chx_": 0.6},
        feature_config=FeatureConfig.preset("128x128x1"), dataset_digest="abc", metrics={"best_valid_map": 0.9},
    )


def test_roundtrip_keeps_everything(tmp_path):
    bundle = _bundle()
    save_bundle(bundle, str(tmp_path / "m.bundle"))
    loaded = load_bundle(str(tmp_path / "m.bundle"))
    assert loaded.digest() == bundle.digest()
    assert (loaded.labels, loaded.caption_text, loaded.thresholds) == (bundle.labels, bundle.caption_text, bundle.thresholds)
    assert loaded.feature_config == bundle.feature_config and loaded.feature_hash == FeatureConfig.preset("128x128x1").hash
    assert loaded.metrics == bundle.metrics and loaded.input_shape == (1, 128, 128)
    assert _bundle(seed=1).digest() != bundle.digest()


def test_a_fresh_process_gives_the_same_scores(tmp_path):
    bundle = _bundle()
    path = tmp_path / "m.bundle"
    save_bundle(bundle, str(path))
    x = np.random.default_rng(0).normal(size=(4, 1, 128, 128)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    with torch.no_grad():
        here = torch.sigmoid(bundle.build_model()(torch.from_numpy(x))).numpy()
    code = (
        "import sys, json, numpy as np, torch\n"
        "from sound_captions.bundle import load_bundle\n"
        f"m = load_bundle({str(path)!r}).build_model()\n"
        f"x = torch.from_numpy(np.load({str(tmp_path / 'x.npy')!r}))\n"
        "with torch.no_grad(): print(json.dumps(torch.sigmoid(m(x)).tolist()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    np.testing.assert_allclose(np.asarray(json.loads(out)), here, atol=1e-6)


def test_not_a_bundle_is_a_clear_error(tmp_path):
    (tmp_path / "x.bundle").write_bytes(b"not a bundle")
    with pytest.raises(BundleError):
        load_bundle(str(tmp_path / "x.bundle"))
    torch.save({"format": "other"}, tmp_path / "y.bundle")
    with pytest.raises(BundleError, match="format"):
        load_bundle(str(tmp_path / "y.bundle"))
