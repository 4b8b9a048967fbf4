"""What a download stage is given (:class:`DownloadOptions`) and what it gives back per clip
(:class:`DownloadOutcome`)."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sound_captions.sources.requests import Seconds

ARCHIVE_NAME = "download-archive.jsonl"
STAGING_DIR = ".part"
# A clip id names files in the scratch folder: one segment, no leading dot (".", "..", ".part"
# and hidden names are refused), at most 200 characters, and not the archive's own name.
_SAFE_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,199}$")
_MAX_MESSAGE_CHARS = 2000


@dataclass(frozen=True)
class DownloadOptions:
    """Settings of the download stage (one object per job, the same on every worker).

    Attributes:
        scratch_dir: local folder for finished segments, staging and the archive.
        source_url_template: URL for ``yt:<YTID>`` sources; ``{ytid}`` and ``{clip_id}`` are
            filled in (tests and private mirrors: ``http://127.0.0.1:8000/{ytid}.mp4``).
        retries: extra attempts after the first for throttling (429) and transient errors.
        backoff_base_s: delay before the first retry; doubles per retry.
        backoff_max_s: cap on one delay (also caps an honoured ``Retry-After``).
        jitter: fraction (0..1) of each delay drawn at random, so workers do not retry in step.
        per_host_min_interval_s: minimum time between two attempt starts to one host (per
            process).
        cookies_file: Netscape cookies file passed to yt-dlp (``cookiefile``).
        proxy: proxy URL passed to yt-dlp (and by it to ffmpeg).
        archive_path: JSON-lines archive of completed clips; default
            ``<scratch_dir>/download-archive.jsonl``.
        socket_timeout_s: network timeout of yt-dlp and of ffmpeg's reads.
        audio_only: drop video/subtitle/data streams from the segment (``ffmpeg -vn -sn -dn``).
        ffmpeg_location: ffmpeg binary to use; default imageio-ffmpeg's.
        force_keyframes_at_cuts: re-encode to cut exactly at the range ends instead of stream
            copying. Audio packets are all key frames, so the copy is already within one codec
            frame (~21-64 ms); re-encoding costs CPU and a lossy generation.
        format: yt-dlp format selector.
    """

    scratch_dir: str
    source_url_template: str = "https://www.youtube.com/watch?v={ytid}"
    retries: int = 5
    backoff_base_s: Seconds = 2.0
    backoff_max_s: Seconds = 120.0
    jitter: float = 0.5
    per_host_min_interval_s: Seconds = 0.0
    cookies_file: str | None = None
    proxy: str | None = None
    archive_path: str | None = None
    socket_timeout_s: Seconds = 30.0
    audio_only: bool = True
    ffmpeg_location: str | None = None
    force_keyframes_at_cuts: bool = False
    format: str = "bestaudio/best"

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"jitter must be in [0, 1], got {self.jitter}")
        if self.backoff_base_s < 0 or self.backoff_max_s < 0 or self.per_host_min_interval_s < 0:
            raise ValueError("backoff and pacing intervals must be >= 0")

    @property
    def resolved_archive_path(self) -> Path:
        return Path(self.archive_path or Path(self.scratch_dir) / ARCHIVE_NAME)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DownloadOptions:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown download options: {sorted(unknown)}")
        return cls(**data)


@dataclass(frozen=True)
class DownloadOutcome:
    """What became of one :class:`ClipRequest`.

    Attributes:
        clip_id: the request's id.
        ok: True when ``path`` holds the segment.
        path: the segment file (or the request's own URI for sources read in place); None on
            failure.
        reason: one of :data:`REASONS` on failure, None on success.
        message: yt-dlp's / ffmpeg's words on failure (or a note on success), for a person.
        attempts: download attempts made by this call (0 when served from the archive).
        from_cache: True when the archive already had the clip and nothing was fetched.
        url: the URL that was (or would have been) fetched; None for sources read in place.
    """

    clip_id: str
    ok: bool
    path: str | None
    reason: str | None
    message: str
    attempts: int
    from_cache: bool
    url: str | None = None

    def to_row(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
