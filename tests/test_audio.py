"""Decoding: any container → 16 kHz mono float32; segments; streaming; typed errors."""

from __future__ import annotations

import numpy as np
import pytest

from sound_captions.audio import (
    CorruptMediaError,
    DecodeError,
    DecodeKilledError,
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


def test_ffmpeg_killed_by_a_signal_is_a_failed_decode_not_a_short_one(media_dir, tmp_path):
    """A decode ffmpeg did not finish (OOM killer, timeout) must not pass for the whole medium."""
    fake = tmp_path / "ffmpeg"
    # writes 0.5 s of float32 silence at 16 kHz, then dies of SIGKILL as the OOM killer would do it
    fake.write_text("#!/bin/sh\nhead -c 32000 /dev/zero\nkill -9 $$\n")
    fake.chmod(0o755)
    source = media_dir / "tone.wav"
    with pytest.raises(DecodeKilledError, match="signal 9"):
        decode_audio(source, ffmpeg=str(fake))
    with pytest.raises(DecodeKilledError, match="incomplete"):
        list(stream_audio(source, chunk_s=0.25, ffmpeg=str(fake)))
    # a consumer that stops early kills ffmpeg itself: that is not a failure
    chunks = stream_audio(source, chunk_s=0.25)
    assert next(chunks).size == 4000
    chunks.close()
