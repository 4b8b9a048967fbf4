"""The context models (an encoder per second + a head over neighbouring seconds: MobileNetV3,
and the compact CNN with ``context``): one set of numbers whichever way in — stacked windows (training, evaluate) or per-second embeddings (captioning)."""

from __future__ import annotations

import wave

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from sound_captions.audio import decode_audio
from sound_captions.bundle import ModelBundle, load_bundle, save_bundle
from sound_captions.caption.pipeline import CaptionOptions, caption_library
from sound_captions.context import (
    MISSING,
    classify_embeddings,
    neighbour_index,
    sequence_index,
    silence_spectrogram,
    stack_context,
)
from sound_captions.features import FeatureConfig, compute_features, to_model_input
from sound_captions.models import build_model, context_seconds, default_hparams
from sound_captions.models.compact import CompactCNN
from sound_captions.models.context_head import ContextTagger
from sound_captions.models.mobilenet import MobileNetContext

TINY = {"arch": "small", "width_mult": 0.25, "embed_dim": 16, "context": 1, "dropout": 0.0}
TINY_COMPACT = {"filters": (4, 8, 8, 8), "conv_dropout": 0.0, "head_units": 16, "head_dropout": 0.0}
LABELS = ["/m/04rlf", "/m/02fs_r", "/m/0chx_"]


def _tiny(context: int = 1, seed: int = 0, architecture: str = "mobilenet") -> ContextTagger:
    torch.manual_seed(seed)
    if architecture == "compact":
        model = CompactCNN(len(LABELS), (1, 128, 128), **TINY_COMPACT, context=context)
    else:
        model = MobileNetContext(len(LABELS), (1, 128, 128), **{**TINY, "context": context})
    # torchvision's init leaves the head near zero: spread it so that neighbours visibly matter
    with torch.no_grad():
        for layer in [*model.project, *model.head]:
            if isinstance(layer, torch.nn.Linear):
                layer.weight.normal_(0, 0.5)
        # batch-norm statistics of this input, not the identity, or every embedding is alike
        for bn in model.modules():
            if isinstance(bn, torch.nn.BatchNorm2d):
                bn.reset_running_stats()
                bn.momentum = None  # a plain average over the passes below
        model.train()
        for _ in range(3):
            model.embed(torch.randn(16, 1, 128, 128))
    return model.eval()


def test_neighbour_index_stays_within_clip_and_augment_version():
    clips = ["a", "a", "a", "b", "b", "a", "a"]
    augments = ["", "", "", "", "", "x", "x"]
    start = [0.0, 1.0, 3.0, 0.5, 1.5, 0.0, 1.0]  # a/"" has no second at 2.0
    idx = neighbour_index(clips, augments, start, 1)
    assert idx.tolist() == [
        [MISSING, 0, 1],
        [0, 1, MISSING],  # 2.0 is missing: silence, not clip a's 3.0
        [MISSING, 2, MISSING],
        [MISSING, 3, 4],  # fractional starts match by milliseconds
        [3, 4, MISSING],
        [MISSING, 5, 6],  # the augmented copy only sees augmented neighbours
        [5, 6, MISSING],
    ]
    assert neighbour_index(clips, None, start, 0).tolist() == [[i] for i in range(7)]
    assert sequence_index(3, 2).tolist() == [[MISSING, MISSING, 0, 1, 2], [MISSING, 0, 1, 2, MISSING], [0, 1, 2, MISSING, MISSING]]
    assert sequence_index(0, 1).shape == (0, 3)


@pytest.mark.parametrize("architecture", ["mobilenet", "compact"])
def test_stacked_windows_and_per_second_embeddings_give_the_same_scores(architecture):
    cfg = FeatureConfig.preset("128x128x1")
    rng = np.random.default_rng(0)
    spec = rng.standard_normal((6, 128, 128, 1)).astype(np.float32)
    silence = silence_spectrogram(cfg)
    assert silence.shape == (128, 128, 1) and np.isfinite(silence).all()
    for context in (1, 2):
        model = _tiny(context, architecture=architecture)
        index = sequence_index(len(spec), context)
        stacked = stack_context(spec, index, silence)
        assert stacked.shape == (6, 128, (2 * context + 1) * 128, 1)
        # the middle window of row k is second k; the first row's left neighbours are silence
        np.testing.assert_array_equal(stacked[2, :, context * 128 : (context + 1) * 128], spec[2])
        np.testing.assert_array_equal(stacked[0, :, :128], silence)
        with torch.inference_mode():
            direct = model(to_model_input(stacked))
            embeddings = model.embed(to_model_input(spec))
            via = classify_embeddings(model, embeddings, index, model.embed(to_model_input(silence[None]))[0])
        torch.testing.assert_close(via, direct, rtol=1e-4, atol=1e-5)
        # context is used: changing a neighbour changes second k's logits, not only second k itself
        changed = spec.copy()
        changed[3] = 0
        with torch.inference_mode():
            other = model(to_model_input(stack_context(changed, index, silence)))
        assert (other[2] - direct[2]).abs().max() > 1e-3
        torch.testing.assert_close(other[0], direct[0])  # second 0 never sees second 3
    with pytest.raises(ValueError, match="3 windows of 128"):
        _tiny(1, architecture=architecture)(torch.zeros(1, 1, 128, 128))


def test_registry_and_bundle_carry_the_context(tmp_path):
    assert context_seconds("mobilenet", {}) == default_hparams("mobilenet")["context"]
    assert context_seconds("mobilenet", {"context": 2}) == 2
    assert context_seconds("baseline", {"context": 2}) == 0  # no such hyper-parameter there
    assert context_seconds("compact", {}) == 0 and context_seconds("compact", {"context": 1}) == 1
    # without context the compact CNN keeps the layout of bundles made before context existed
    assert not hasattr(build_model("compact", 3), "project")
    model = build_model("mobilenet", 3, (1, 128, 128), **{**TINY, "context": 2})
    cfg = FeatureConfig(height=128, width=128, level_floor_dbfs=-90.0)
    bundle = ModelBundle(
        architecture="mobilenet", hparams={**TINY, "context": 2}, state_dict=model.state_dict(),
        labels=LABELS, label_names=dict.fromkeys(LABELS, "x"), caption_text={}, thresholds=dict.fromkeys(LABELS, 0.5),
        feature_config=cfg, gate_dbfs=-40.0,
    )
    save_bundle(bundle, str(tmp_path / "b.pt"))
    loaded = load_bundle(str(tmp_path / "b.pt"))
    assert loaded.context == 2 and loaded.input_shape == (1, 128, 128) and loaded.model_input_shape == (1, 128, 640)
    assert loaded.feature_config.level_floor_dbfs == -90.0 and loaded.gate_dbfs == -40.0
    assert loaded.digest() == bundle.digest()
    rebuilt = loaded.build_model()
    assert rebuilt.context == 2 and not rebuilt.training


def _write(path, x, sr=16_000):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes((np.clip(x, -1, 1 - 1 / 32768) * 32768).astype("<i2").tobytes())


@pytest.mark.ray
def test_caption_run_scores_each_second_with_its_neighbours(ray_session, tmp_path):
    cfg = FeatureConfig.preset("128x128x1")
    model = _tiny(1, seed=4)
    bundle = ModelBundle(
        architecture="mobilenet", hparams=TINY, state_dict=model.state_dict(), labels=LABELS,
        label_names=dict.fromkeys(LABELS, "x"), caption_text={}, thresholds=dict.fromkeys(LABELS, 0.5), feature_config=cfg,
    )
    save_bundle(bundle, str(tmp_path / "ctx.pt"))
    rng = np.random.default_rng(1)
    t = np.arange(7 * 16_000) / 16_000
    x = 0.3 * np.sin(2 * np.pi * 440 * t) * (t < 3) + 0.1 * rng.standard_normal(len(t)) * (t >= 4)
    media = tmp_path / "in"
    media.mkdir()
    _write(media / "seq.wav", x)
    caption_library([str(media)], CaptionOptions(out=str(tmp_path / "out"), model=str(tmp_path / "ctx.pt"), force=True))
    got = pq.read_table(tmp_path / "out" / "seq.scores.parquet").to_pandas()[LABELS].to_numpy()

    # the caption run carries spectrograms as float16 between its stages
    spec = compute_features(decode_audio(str(media / "seq.wav"), sample_rate_hz=cfg.sample_rate_hz), cfg).astype(np.float16).astype(np.float32)
    assert len(got) == len(spec) == 7
    with torch.inference_mode():
        want = torch.sigmoid(model(to_model_input(stack_context(spec, sequence_index(len(spec), 1), silence_spectrogram(cfg))))).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)
