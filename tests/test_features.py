"""FeatureConfig and spectrograms: shapes, the time contract, hashing, batch consistency."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sound_captions.features import (
    TRANSFORM_WINDOWS,
    FeatureConfig,
    FeatureConfigMismatchError,
    compute_features,
    count_windows,
    frame_windows,
    spectrogram,
    to_model_input,
)


def _tone(seconds: float, freq: float = 1000.0, rate: int = 16_000, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    noise = np.random.default_rng(seed).normal(0, 0.01, t.size)
    return (0.5 * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32)


@pytest.mark.parametrize(
    ("preset", "shape"),
    [("128x128x1", (128, 128, 1)), ("256x256x3", (256, 256, 3)), ("linear-128x128x1", (128, 128, 1)), ("linear-256x256x3", (256, 256, 3))],
)
def test_presets_give_the_studys_shapes(preset, shape):
    cfg = FeatureConfig.preset(preset)
    feats = compute_features(_tone(3), cfg)
    assert feats.shape == (3, *shape) and feats.dtype == np.float32
    assert np.isfinite(feats).all()


def test_default_is_log_mel_64x64x1():
    cfg = FeatureConfig()
    assert (cfg.kind, cfg.shape, cfg.sample_rate_hz, cfg.hop_samples) == ("mel", (64, 64, 1), 16_000, 250)


@given(n_samples=st.integers(min_value=0, max_value=16_000 * 20))
@settings(max_examples=200, deadline=None)
def test_windows_follow_the_time_contract(n_samples):
    cfg = FeatureConfig()
    full, rest = divmod(n_samples, 16_000)
    expected = full + (1 if rest >= 8_000 else 0)
    assert count_windows(n_samples, cfg) == expected
    windows = frame_windows(np.ones(n_samples, np.float32), cfg)
    assert windows.shape == (expected, 16_000)
    if expected > full:  # the padded last second holds the rest, then zeros
        assert windows[-1, :rest].all() and not windows[-1, rest:].any()


def test_tone_energy_lands_in_the_right_mel_rows():
    cfg = FeatureConfig(normalize=False)
    low = compute_features(_tone(1, 300), cfg)[0, :, :, 0].mean(axis=1)
    high = compute_features(_tone(1, 4000), cfg)[0, :, :, 0].mean(axis=1)
    assert np.argmax(low) < np.argmax(high)


def test_normalised_windows_have_zero_mean_unit_variance_and_silence_is_zero():
    cfg = FeatureConfig()
    feats = compute_features(np.concatenate([_tone(1), np.zeros(16_000, np.float32)]), cfg)
    assert abs(feats[0].mean()) < 1e-3 and abs(feats[0].std() - 1) < 1e-2
    assert np.allclose(feats[1], 0.0)


@pytest.mark.parametrize("cfg", [FeatureConfig(), FeatureConfig.preset("linear-128x128x1"), FeatureConfig.panns()], ids=["mel", "linear", "panns"])
def test_batch_equals_stacked_single_windows(cfg):
    n = 2 * TRANSFORM_WINDOWS + 5  # the transform runs on parts of the batch: two whole ones and a rest
    rng = np.random.default_rng(3)
    samples = np.concatenate([_tone(1, float(f), seed=i) for i, f in enumerate(rng.uniform(200, 4000, n))])
    windows = frame_windows(samples * rng.uniform(0.01, 1.0, samples.size).astype(np.float32), cfg)
    batched = spectrogram(windows, cfg).numpy()
    single = np.concatenate([spectrogram(windows[i : i + 1], cfg).numpy() for i in range(n)])
    assert batched.shape == (n, *cfg.shape)
    np.testing.assert_allclose(batched, single, atol=1e-4)


def test_hash_is_stable_and_tells_configs_apart():
    a, b = FeatureConfig(), FeatureConfig.preset("64x64x1")
    assert a.hash == b.hash and len(a.hash) == 16
    assert FeatureConfig.from_dict(a.to_dict()) == a
    others = {FeatureConfig.preset(p).hash for p in ("128x128x1", "256x256x3", "linear-128x128x1")}
    assert a.hash not in others and len(others) == 3
    with pytest.raises(FeatureConfigMismatchError):
        a.check(FeatureConfig.preset("256x256x3").hash, "the shards")


def test_model_input_is_nchw_float32():
    x = to_model_input(np.zeros((2, 128, 64, 3), np.float16))
    assert tuple(x.shape) == (2, 3, 128, 64) and str(x.dtype) == "torch.float32"


def test_bad_configs_are_refused():
    with pytest.raises(ValueError):
        FeatureConfig(kind="cqt")
    with pytest.raises(ValueError):
        FeatureConfig(channels=2)
    with pytest.raises(ValueError):
        FeatureConfig.preset("big")
