"""Level-preserving features: a quiet window no longer looks like a loud one; old configs keep their hash."""

import json

import numpy as np
import pytest

from sound_captions.features import FeatureConfig, spectrogram


def _noise(dbfs: float, n: int = 16_000, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal(n).astype(np.float32)
    return x / np.sqrt(np.mean(x**2)) * 10 ** (dbfs / 20)


def test_default_config_hash_and_dict_unchanged():
    cfg = FeatureConfig()
    assert "level_floor_dbfs" not in cfg.to_dict()
    # the digest of today's default config, as older bundles and datasets recorded it
    legacy = {k: v for k, v in cfg.to_dict().items()}
    import hashlib

    assert cfg.hash == hashlib.sha256(json.dumps(legacy, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]
    assert FeatureConfig.from_dict(legacy) == cfg


def test_per_window_mode_hides_level_and_level_mode_keeps_it():
    quiet, loud = _noise(-50.0), _noise(-10.0)
    old = FeatureConfig(height=64, width=100)
    a, b = spectrogram(np.stack([quiet, loud]), old).numpy()
    assert abs(a.mean() - b.mean()) < 1e-3  # the level is gone: both standardised to mean 0

    cfg = FeatureConfig(height=64, width=100, level_floor_dbfs=-90.0)
    q, lo, silent = spectrogram(np.stack([quiet, loud, np.zeros(16_000, np.float32)]), cfg).numpy()
    assert lo.mean() > q.mean() + 0.5  # 40 dB louder → clearly higher features (scale 45 dB per unit)
    assert np.allclose(silent, -1.0)  # digital silence sits at the floor
    assert lo.max() <= 1.0 + 1e-3 and q.min() >= -1.0 - 1e-6
    assert cfg.hash != old.hash and FeatureConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_level_floor_must_be_negative():
    with pytest.raises(ValueError):
        FeatureConfig(level_floor_dbfs=3.0)


def test_bundle_round_trips_level_setting(tmp_path):
    from sound_captions.bundle import load_bundle
    from sound_captions.testing.bundles import train_tiny_bundle

    cfg = FeatureConfig(height=32, width=32, level_floor_dbfs=-90.0)
    train_tiny_bundle(tmp_path / "b.pt", epochs=1, cfg=cfg)
    loaded = load_bundle(str(tmp_path / "b.pt"))
    assert loaded.feature_config == cfg and loaded.feature_config.level_floor_dbfs == -90.0
    assert loaded.feature_hash == cfg.hash
