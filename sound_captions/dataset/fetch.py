"""Fetch stage of a dataset build: request rows → the same rows with the media to decode.

    request row ─► download_segment (yt-dlp, segment only, audio only) ─► row + media columns

Columns added (what :func:`~sound_captions.dataset.stages.decode_stage` reads):

- ``media`` (str): what was fetched: the scratch file of a downloaded segment, or the request's
  own URI for sources read in place (local path, ``file://``, ``s3://``);
- ``media_bytes`` (bytes): the downloaded segment itself (empty for sources read in place). The
  bytes travel with the row, so the decode task may run on another node than the download;
  audio-only segments are small (10 s of AAC ≈ 100-200 kB), and Ray Data's streaming executor
  bounds how many rows are in flight;
- ``media_offset_s`` (float): where the requested segment starts inside ``media``: 0 for a
  downloaded segment, NaN for media read in place (the decoder seeks to ``start_s`` itself);
- ``fetch_reason`` / ``fetch_message`` (str): a reason class of :data:`sound_captions.download.REASONS`
  and the downloader's words when the item could not be fetched, else empty.

The stage is a callable class for an actor pool: every actor keeps one process-wide host pacer and
one archive reader, and runs ``concurrency`` calls at a time on threads (network-bound work).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from sound_captions import reasons
from sound_captions.dataset.stages import split_labels
from sound_captions.download import DownloadOptions, download_segment, ensure_ffmpeg_on_path
from sound_captions.sources.requests import ClipRequest

FETCH_COLUMNS = ("media", "media_bytes", "media_offset_s", "fetch_reason", "fetch_message")


def _seconds(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def request_from_row(row: dict[str, Any]) -> ClipRequest:
    """A build row (labels ``|``-joined, NaN for open range ends) → :class:`ClipRequest`."""
    return ClipRequest(
        clip_id=str(row["clip_id"]),
        source=str(row["source"]),
        start_s=_seconds(row.get("start_s")),
        end_s=_seconds(row.get("end_s")),
        labels=tuple(split_labels(row.get("labels"))),
        origin="",
    )


def fetch_row(row: dict[str, Any], options: DownloadOptions) -> dict[str, Any]:
    """One build row → its fetch columns (never raises for per-item problems)."""
    outcome = download_segment(request_from_row(row), options)
    if not outcome.ok:
        return {
            "media": "", "media_bytes": b"", "media_offset_s": float("nan"),
            "fetch_reason": outcome.reason or reasons.OTHER, "fetch_message": outcome.message,
        }  # fmt: skip
    if outcome.url is None:  # read in place: the decoder seeks to the request's start itself
        return {"media": outcome.path or "", "media_bytes": b"", "media_offset_s": float("nan"), "fetch_reason": "", "fetch_message": ""}
    try:
        data = Path(outcome.path or "").read_bytes()
    except OSError as exc:
        return {
            "media": outcome.path or "", "media_bytes": b"", "media_offset_s": float("nan"),
            "fetch_reason": reasons.OTHER, "fetch_message": f"downloaded segment unreadable: {exc}",
        }  # fmt: skip
    return {"media": outcome.path or "", "media_bytes": data, "media_offset_s": 0.0, "fetch_reason": "", "fetch_message": ""}


class FetchSegments:
    """Ray Data adapter (``map_batches`` in an actor pool): request rows → rows + fetch columns.

    Use with ``fn_constructor_kwargs={"options": download_options.to_dict()}``.
    """

    def __init__(self, options: DownloadOptions | dict[str, Any]) -> None:
        self.options = options if isinstance(options, DownloadOptions) else DownloadOptions.from_dict(options)
        ensure_ffmpeg_on_path(self.options.ffmpeg_location)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        columns = list(batch)
        n = len(batch[columns[0]]) if columns else 0
        fetched = [fetch_row({c: batch[c][i] for c in columns}, self.options) for i in range(n)]
        out = dict(batch)
        for name in FETCH_COLUMNS:
            values = [f[name] for f in fetched]
            if name == "media_offset_s":
                out[name] = np.asarray(values, dtype=np.float64)
            else:
                out[name] = np.asarray(values, dtype=object)
        return out
