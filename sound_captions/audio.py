"""Media file (any container/codec ffmpeg reads) → 16 kHz mono float32 samples.

Decoding runs ffmpeg as a subprocess through ffmpeg-python. The binary is, in order: the
``ffmpeg`` argument, ``$SOUND_CAPTIONS_FFMPEG``, or the one shipped inside the imageio-ffmpeg
wheel. Failures become typed errors that carry ffmpeg's own words:

- :class:`MediaNotFoundError` — the file or URL does not exist;
- :class:`NoAudioStreamError` — the container has no audio stream (a silent screen recording);
- :class:`CorruptMediaError` — ffmpeg cannot read the container or its audio.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator

import numpy as np

from sound_captions import reasons, storage
from sound_captions.sources.requests import Seconds

SAMPLE_RATE_HZ = 16_000
_BYTES_PER_SAMPLE = 4  # float32


class DecodeError(RuntimeError):
    """ffmpeg could not turn a medium into audio samples. ``reason`` is its name in ``reasons.py``."""

    reason = reasons.DECODE_ERROR

    def __init__(self, source: str, message: str):
        super().__init__(f"{source}: {message}")
        self.source = source
        self.detail = message


class MediaNotFoundError(DecodeError, FileNotFoundError):
    reason = reasons.NOT_FOUND


class NoAudioStreamError(DecodeError):
    reason = reasons.NO_AUDIO


class CorruptMediaError(DecodeError):
    reason = reasons.DECODE_ERROR


class DecodeKilledError(DecodeError):
    """ffmpeg was ended by a signal (out of memory, a timeout, an operator): what it wrote is a
    truncated decode, never to be captioned as if it were the whole medium."""

    reason = reasons.DECODE_ERROR


def _failed(source: str, returncode: int, stderr: str) -> DecodeError:
    if returncode < 0:
        return DecodeKilledError(source, f"ffmpeg was killed by signal {-returncode} before the end: the decode is incomplete")
    return _classify(source, stderr)


def ffmpeg_exe(ffmpeg: str | None = None) -> str:
    """Path of the ffmpeg binary to run."""
    if ffmpeg:
        return ffmpeg
    env = os.environ.get("SOUND_CAPTIONS_FFMPEG")
    if env:
        return env
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


_NO_AUDIO = re.compile(r"matches no streams|does not contain any stream|Output file .* does not contain", re.I)
_NOT_FOUND = re.compile(r"No such file or directory|404 Not Found|Server returned 404", re.I)


def _classify(source: str, stderr: str) -> DecodeError:
    tail = storage.redact_urls("\n".join(line for line in stderr.strip().splitlines()[-6:] if line.strip()))
    if _NOT_FOUND.search(stderr):
        return MediaNotFoundError(source, f"no such file or URL ({tail})")
    if _NO_AUDIO.search(stderr):
        return NoAudioStreamError(source, "the medium has no audio stream")
    return CorruptMediaError(source, f"ffmpeg could not decode the audio: {tail or 'no output'}")


def _input_for(source: str) -> str:
    """What to hand ffmpeg: a local path, or an http(s) URL (s3:// is presigned)."""
    text = os.fspath(source)
    if storage.is_url(text):
        return text
    if storage.is_s3(text):
        bucket, key = storage.split_s3(text)
        return storage.s3_client().generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=3600)
    path = storage.local_path(text)
    if not path.is_file():
        raise MediaNotFoundError(text, "no such file")
    return str(path)


def _command(source: str, start_s: Seconds | None, end_s: Seconds | None, sample_rate_hz: int, ffmpeg: str | None, threads: int):
    import ffmpeg as ffmpeg_python

    input_kwargs: dict = {}
    if start_s:
        input_kwargs["ss"] = f"{start_s:.3f}"
    if end_s is not None:
        input_kwargs["t"] = f"{end_s - (start_s or 0.0):.3f}"
    stream = ffmpeg_python.input(_input_for(source), **input_kwargs)
    out = ffmpeg_python.output(
        stream["a:0"], "pipe:", format="f32le", acodec="pcm_f32le", ac=1, ar=sample_rate_hz, threads=threads
    )
    return ffmpeg_python.compile(out.global_args("-nostdin", "-hide_banner", "-loglevel", "error"), cmd=ffmpeg_exe(ffmpeg))


def decode_audio(
    source: str | os.PathLike,
    start_s: Seconds | None = None,
    end_s: Seconds | None = None,
    *,
    sample_rate_hz: int = SAMPLE_RATE_HZ,
    ffmpeg: str | None = None,
    threads: int = 1,
) -> np.ndarray:
    """Decode ``source`` (path, file://, s3:// or http(s) URL) to mono float32 at ``sample_rate_hz``.

    ``start_s``/``end_s`` select a segment of the source's timeline (seconds). Returns a 1-D
    ``np.ndarray`` of ``float32`` samples in [-1, 1]. Raises a :class:`DecodeError` subclass.
    """
    text = os.fspath(source)
    if end_s is not None and start_s is not None and end_s <= start_s:
        raise ValueError(f"end_s ({end_s}) must be after start_s ({start_s})")
    cmd = _command(text, start_s, end_s, sample_rate_hz, ffmpeg, threads)
    proc = subprocess.run(cmd, capture_output=True, check=False)
    stderr = proc.stderr.decode("utf-8", "replace")
    if proc.returncode != 0:
        raise _failed(text, proc.returncode, stderr)
    usable = len(proc.stdout) - len(proc.stdout) % _BYTES_PER_SAMPLE
    samples = np.frombuffer(proc.stdout[:usable], dtype="<f4").astype(np.float32, copy=True)
    if samples.size == 0 and ("Invalid data" in stderr or "error" in stderr.lower()):
        raise _classify(text, stderr)
    return samples


def stream_audio(
    source: str | os.PathLike,
    chunk_s: Seconds = 60.0,
    *,
    sample_rate_hz: int = SAMPLE_RATE_HZ,
    ffmpeg: str | None = None,
    threads: int = 1,
) -> Iterator[np.ndarray]:
    """Decode ``source`` incrementally: yields float32 chunks of ``chunk_s`` seconds (the last
    may be shorter), so memory does not grow with the medium's length."""
    text = os.fspath(source)
    chunk_samples = int(round(chunk_s * sample_rate_hz))
    if chunk_samples <= 0:
        raise ValueError("chunk_s must be positive")
    cmd = _command(text, None, None, sample_rate_hz, ffmpeg, threads)
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        # stderr is small with -loglevel error; read it after stdout closes.
        finished = False
        try:
            while True:
                data = _read_exactly(proc.stdout, chunk_samples * _BYTES_PER_SAMPLE)
                if not data:
                    break
                usable = len(data) - len(data) % _BYTES_PER_SAMPLE
                if usable:
                    yield np.frombuffer(data[:usable], dtype="<f4").astype(np.float32, copy=True)
                if len(data) < chunk_samples * _BYTES_PER_SAMPLE:
                    break
            finished = True
        finally:
            if not finished and proc.poll() is None:
                proc.kill()  # the consumer stopped early: our kill, not a failed decode
        stderr = proc.stderr.read().decode("utf-8", "replace")
        returncode = proc.wait()
        if returncode != 0:  # < 0: killed by a signal, the output is truncated
            raise _failed(text, returncode, stderr)


def _read_exactly(pipe, n: int) -> bytes:
    parts: list[bytes] = []
    remaining = n
    while remaining > 0:
        part = pipe.read(remaining)
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    return b"".join(parts)


def media_duration_s(source: str | os.PathLike, ffmpeg: str | None = None) -> Seconds | None:
    """The container's duration as ffmpeg reports it (``None`` when it does not say)."""
    proc = subprocess.run(
        [ffmpeg_exe(ffmpeg), "-hide_banner", "-nostdin", "-i", _input_for(os.fspath(source))],
        capture_output=True,
        check=False,
    )
    match = re.search(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", proc.stderr.decode("utf-8", "replace"))
    if not match:
        return None
    h, m, s = match.groups()
    return int(h) * 3600 + int(m) * 60 + float(s)


__all__ = [
    "CorruptMediaError",
    "DecodeError",
    "MediaNotFoundError",
    "NoAudioStreamError",
    "SAMPLE_RATE_HZ",
    "decode_audio",
    "ffmpeg_exe",
    "media_duration_s",
    "stream_audio",
]
