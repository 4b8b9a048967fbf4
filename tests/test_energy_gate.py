"""The bundle's energy gate: digital silence and -50 dBFS noise get no caption; loud sound still does."""

import dataclasses
import wave

import numpy as np
import pyarrow.parquet as pq
import webvtt

from sound_captions.bundle import load_bundle, save_bundle
from sound_captions.caption.pipeline import CaptionOptions, caption_library
from sound_captions.caption.stages import window_level_dbfs
from sound_captions.testing.bundles import train_tiny_bundle

SR = 16_000


def _write(path, x):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes((np.clip(x, -1, 1 - 1 / 32768) * 32768).astype("<i2").tobytes())


def _noise(seconds, dbfs, seed):
    x = np.random.default_rng(seed).standard_normal(seconds * SR)
    return x / np.sqrt(np.mean(x**2)) * 10 ** (dbfs / 20)


def test_window_level():
    w = np.stack([np.zeros(SR, np.float32), _noise(1, -50.0, 0).astype(np.float32)])
    level = window_level_dbfs(w)
    assert level[0] < -150 and abs(level[1] + 50.0) < 0.1


def test_gate_silences_quiet_seconds_and_round_trips(ray_session, tmp_path):
    bundle = train_tiny_bundle(tmp_path / "plain.pt")
    gated = dataclasses.replace(bundle, gate_dbfs=-45.0)
    save_bundle(gated, str(tmp_path / "gated.pt"))
    assert load_bundle(str(tmp_path / "gated.pt")).gate_dbfs == -45.0
    assert load_bundle(str(tmp_path / "plain.pt")).gate_dbfs is None
    assert gated.digest() != bundle.digest()

    # 4 s digital silence, 4 s of -50 dBFS white noise, 4 s of -12 dBFS white noise
    x = np.concatenate([np.zeros(4 * SR), _noise(4, -50.0, 1), _noise(4, -12.0, 2)])
    media = tmp_path / "in"
    media.mkdir()
    _write(media / "quiet.wav", x)
    for name in ("plain", "gated"):
        caption_library([str(media)], CaptionOptions(out=str(tmp_path / f"out-{name}"), model=str(tmp_path / f"{name}.pt"), force=True))
    scores = pq.read_table(tmp_path / "out-gated" / "quiet.scores.parquet").to_pandas()
    labels = [c for c in scores.columns if c.startswith("/")]
    assert (scores.loc[:7, labels].to_numpy() == 0).all()
    assert scores.loc[8:, labels].to_numpy().max() > 0.5  # loud noise still scored: the gate is not a mute
    cues = webvtt.read(str(tmp_path / "out-gated" / "quiet.vtt")).captions
    assert cues and all(c.start_in_seconds >= 8.0 for c in cues)
    plain = pq.read_table(tmp_path / "out-plain" / "quiet.scores.parquet").to_pandas()
    assert plain.loc[4:7, labels].to_numpy().max() > 0  # without the gate the model scores quiet noise
