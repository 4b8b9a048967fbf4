"""Media → one-second window rows: the caption run's first stage, a Ray task per video.

It imports neither torch nor the model (numpy, ffmpeg and, for URLs, yt-dlp), so a decode
worker starts without torch's ~1.2 s of CPU and holds less memory (a process that imports this
module is 31 MB resident; one that imports ``caption.stages``, with torch, 485 MB).
Rows are those of ``caption.stages``: one per second (``kind == "window"``), then one ``"end"``
row carrying the video's length, or one ``"error"`` row (``"reason: message"``).
"""

from __future__ import annotations

import re

import numpy as np

from sound_captions import reasons, storage
from sound_captions.audio import DecodeError, stream_audio
from sound_captions.caption.fetch import FetchError, FetchOptions, fetched
from sound_captions.feature_config import FeatureConfig, frame_windows


def _rows(video: int, kind: str, seconds: np.ndarray, n_seconds: int, message: str, windows: np.ndarray) -> dict:
    n = len(seconds)
    return {
        "video": np.full(n, video, dtype=np.int64),
        "kind": np.asarray([kind] * n, dtype=object),
        "second": np.asarray(seconds, dtype=np.int32),
        "n_seconds": np.full(n, n_seconds, dtype=np.int32),
        "message": np.asarray([message] * n, dtype=object),
        "window": windows,
    }


def _failure(exc: Exception, uri: str) -> str:
    """A decode/fetch exception → ``"reason: message"`` for the report."""
    if isinstance(exc, DecodeError):
        reason = exc.reason
        if storage.is_s3(uri) and (reason == reasons.NOT_FOUND or re.search(r"\b40[134]\b|Forbidden|Access Denied", str(exc))):
            reason = reasons.UNREADABLE  # a missing object or one we may not read
        elif reason == reasons.NOT_FOUND:
            reason = reasons.UNAVAILABLE
        return f"{reason}: {exc}"
    if isinstance(exc, FetchError):
        return f"{exc.reason}: {exc}"
    return f"other: {type(exc).__name__}: {exc}"


def decode_chunks(batch: dict, feature_config: dict, chunk_s: int, ffmpeg: str | None = None, fetch: dict | None = None):
    """One video per batch → batches of one-second window rows, then an end (or error) row.

    URLs are first fetched with yt-dlp into a scratch folder on this worker (deleted after);
    local files and ``s3://`` objects (through a presigned URL) are decoded in place. ffmpeg's
    output is read ``chunk_s`` seconds at a time, so a worker holds one chunk, not the video.
    """
    cfg = FeatureConfig.from_dict(feature_config)
    empty = np.zeros((1, cfg.window_samples), dtype=np.float32)
    for video, uri in zip(batch["video"], batch["uri"], strict=True):
        video, uri = int(video), str(uri)
        second = 0
        try:
            with fetched(uri, FetchOptions(**(fetch or {}))) as source:
                carry = np.zeros(0, dtype=np.float32)
                for chunk in stream_audio(source, chunk_s=chunk_s, sample_rate_hz=cfg.sample_rate_hz, ffmpeg=ffmpeg):
                    carry = np.concatenate([carry, chunk]) if carry.size else chunk
                    whole = carry.size // cfg.window_samples
                    if whole:
                        windows = carry[: whole * cfg.window_samples].reshape(whole, cfg.window_samples)
                        carry = carry[whole * cfg.window_samples :].copy()
                        yield _rows(video, "window", np.arange(second, second + whole), -1, "", windows)
                        second += whole
                tail = frame_windows(carry, cfg)  # the last partial second: padded if >= 0.5 s
                if len(tail):
                    yield _rows(video, "window", np.arange(second, second + len(tail)), -1, "", tail)
                    second += len(tail)
            if second == 0:
                yield _rows(video, "error", np.array([0]), 0, "empty: the medium has no audio longer than half a second", empty)
            else:
                yield _rows(video, "end", np.array([0]), second, "", empty)
        except Exception as exc:  # noqa: BLE001 - one bad input fails alone, with its reason
            yield _rows(video, "error", np.array([0]), 0, _failure(exc, uri), empty)
