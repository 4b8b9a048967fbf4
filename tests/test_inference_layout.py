"""The caption run's inference actor computes its convolutions on channels-last tensors (issue
11: 1.7× the baseline's windows/s on 3-channel features on CPU); it must give the numbers of the
plain eager model on the same windows, for a one-second model and for a context model's
embeddings, whether it runs a batch in one pass or in passes of a few windows (the CPU default,
whose activations stay in the caches), and whether it is given spectrograms or computes them."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from sound_captions.bundle import ModelBundle, save_bundle
from sound_captions.caption.stages import Classifier, add_features
from sound_captions.context import per_second_outputs
from sound_captions.features import FeatureConfig, to_model_input
from sound_captions.models import build_model

LABELS = ["/m/02fs_r", "/m/04rlf", "/m/0chx_"]


@pytest.mark.parametrize(
    ("architecture", "hparams", "channels"), [("baseline", {}, 1), ("baseline", {}, 3), ("compact", {"context": 1}, 1)],
)
def test_the_actor_scores_as_the_eager_model_does(tmp_path, monkeypatch, architecture, hparams, channels):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the CPU path (a GPU autocasts to fp16)
    cfg = FeatureConfig(height=64, width=64, channels=channels)
    torch.manual_seed(0)
    model = build_model(architecture, len(LABELS), (channels, 64, 64), **hparams)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so the folded-in eval path is exercised
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(-1.5, 1.5)  # negative scales: pooling must not move before them
    bundle = ModelBundle(
        architecture=architecture, hparams=hparams, state_dict=model.state_dict(), labels=LABELS,
        label_names=dict.fromkeys(LABELS, "x"), caption_text={}, thresholds=dict.fromkeys(LABELS, 0.5), feature_config=cfg,
    )  # fmt: skip
    save_bundle(bundle, str(tmp_path / "m.bundle"))
    spec = np.random.default_rng(1).standard_normal((37, 64, 64, channels)).astype(np.float16)
    kind = np.array(["window"] * 35 + ["end", "error"], dtype=object)
    key = "embedding" if hparams.get("context") else "scores"
    with torch.inference_mode():
        expected = per_second_outputs(model.eval(), to_model_input(spec[:35]), bundle.context).numpy()
    for forward_batch in (8, 1, 256):  # 35 windows: passes of 8 (the last of 3), of 1, and one pass
        actor = Classifier(str(tmp_path / "m.bundle"), threads=2, cpu_forward_batch=forward_batch)
        out = actor({"spectrogram": spec.copy(), "kind": kind})
        assert out[key].shape == (37, expected.shape[1])
        assert np.abs(out[key][:35] - expected).max() < 1e-5, forward_batch
        assert not out[key][35:].any()  # the rows that are no window stay zero
    conv = next(m for m in actor.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)  # the fast layout is the one in use
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in actor.model.modules())  # and the fused form


def test_the_actor_computing_its_spectrograms_scores_as_the_separate_stage(tmp_path, monkeypatch):
    """On CPU the caption run sends window rows straight to the actor (``features=True``); its
    scores and levels must be those of ``add_features`` followed by the actor, bit for bit."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = FeatureConfig(height=64, width=64, channels=1)
    torch.manual_seed(0)
    model = build_model("baseline", len(LABELS), (1, 64, 64))
    bundle = ModelBundle(
        architecture="baseline", hparams={}, state_dict=model.state_dict(), labels=LABELS,
        label_names=dict.fromkeys(LABELS, "x"), caption_text={}, thresholds=dict.fromkeys(LABELS, 0.5), feature_config=cfg,
    )  # fmt: skip
    save_bundle(bundle, str(tmp_path / "m.bundle"))
    rng = np.random.default_rng(2)
    windows = (rng.standard_normal((21, cfg.window_samples)) * np.logspace(-4, -0.5, 21)[:, None]).astype(np.float32)
    kind = np.array(["window"] * 20 + ["end"], dtype=object)

    def rows():
        return {"window": windows.copy(), "kind": kind.copy()}

    separate = Classifier(str(tmp_path / "m.bundle"), threads=2)(add_features(rows(), cfg.to_dict(), threads=2))
    together = Classifier(str(tmp_path / "m.bundle"), threads=2, features=True)(rows())
    assert "window" not in together and "spectrogram" not in together  # nothing bulky travels on
    assert np.array_equal(together["scores"], separate["scores"])
    assert np.array_equal(together["level_dbfs"], separate["level_dbfs"])
    assert together["scores"][:20].any() and not together["scores"][20:].any()


def test_the_decode_stage_imports_no_torch():
    """A decode worker imports ``caption.decode`` only: without torch it starts in a fraction of
    the time (torch's import is ~1.2 s of CPU per worker on this machine) and holds less memory."""
    code = "import sys, sound_captions.caption.decode; print(sorted(m for m in ('torch', 'torchaudio') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", out
