"""Decoding: any container → 16 kHz mono float32; segments; streaming; typed errors."""

from __future__ import annotations

import numpy as np
import pytest

from sound_captions.audio import (
    CorruptMediaError,
    DecodeError,
    MediaNotFoundError,
    NoAudioStreamError,
    decode_audio,
    media_duration_s,
    stream_audio,
)


@pytest.mark.parametrize(
    ("name", "seconds"), [("beep-music.mp4", 6), ("noise.mkv", 2), ("tone.wav", 2), ("clip.webm", 2)]
)
def test_decodes_every_container_to_16k_mono_float32(media_dir, name, seconds):
    samples = decode_audio(media_dir / name)
    assert samples.dtype == np.float32 and samples.ndim == 1
    # Lossy codecs may add or trim a few ms of priming; the length is right to 30 ms.
    assert abs(samples.size - seconds * 16_000) <= 480
    assert 0.05 < np.abs(samples).max() <= 1.0


def test_segment_selects_the_right_part(media_dir):
    # beep for 3 s, then music for 3 s: the segment [3, 5) holds 2 s of the second part.
    whole = decode_audio(media_dir / "beep-music.mp4")
    part = decode_audio(media_dir / "beep-music.mp4", start_s=3.0, end_s=5.0)
    assert abs(part.size - 32_000) <= 160
    offset = 3 * 16_000
    window = whole[offset + 4000 : offset + 12000]
    # Same audio (up to codec/seek alignment): high correlation somewhere near the start.
    corr = max(np.corrcoef(window, part[4000 + d : 12000 + d])[0, 1] for d in range(-64, 65))
    assert corr > 0.9


def test_other_sample_rate(media_dir):
    samples = decode_audio(media_dir / "tone.wav", sample_rate_hz=8_000)
    assert abs(samples.size - 16_000) <= 80


def test_missing_file_is_a_typed_error(tmp_path):
    with pytest.raises(MediaNotFoundError) as info:
        decode_audio(tmp_path / "nope.mp4")
    assert "nope.mp4" in str(info.value)
    assert isinstance(info.value, DecodeError) and info.value.reason == "not_found"


def test_file_without_audio_is_a_typed_error(media_dir):
    with pytest.raises(NoAudioStreamError) as info:
        decode_audio(media_dir / "no-audio.mp4")
    assert info.value.reason == "no_audio"


def test_corrupt_file_is_a_typed_error_with_ffmpegs_words(media_dir):
    with pytest.raises(CorruptMediaError) as info:
        decode_audio(media_dir / "corrupt.mp4")
    assert info.value.reason == "decode_error"
    assert "Invalid data" in str(info.value) or "moov" in str(info.value)


def test_streaming_yields_the_same_samples_in_chunks(media_dir):
    whole = decode_audio(media_dir / "beep-music.mp4")
    chunks = list(stream_audio(media_dir / "beep-music.mp4", chunk_s=2.5))
    assert [c.size for c in chunks[:-1]] == [40_000] * (len(chunks) - 1)
    np.testing.assert_array_equal(np.concatenate(chunks), whole)


def test_streaming_errors_are_typed(media_dir, tmp_path):
    with pytest.raises(NoAudioStreamError):
        list(stream_audio(media_dir / "no-audio.mp4"))
    with pytest.raises(MediaNotFoundError):
        list(stream_audio(tmp_path / "missing.wav"))


def test_duration(media_dir):
    assert media_duration_s(media_dir / "beep-music.mp4") == pytest.approx(6.0, abs=0.1)


def test_bad_segment_is_rejected(media_dir):
    with pytest.raises(ValueError):
        decode_audio(media_dir / "tone.wav", start_s=2.0, end_s=1.0)
