"""Download stage: a clip request → its audio segment in a scratch folder, or a classified
failure. See ``segments.py`` for the whole story (ranges, staging, resumability, politeness).

    options.py   what the stage is given and gives back per clip
    reasons.py   the failure reasons, how messages map to them, retries and backoff
    pacing.py    attempt starts to one host spaced apart
    archive.py   the record of completed clips (a rerun never fetches one twice)
    ffmpeg.py    ``ffmpeg`` on PATH for yt-dlp's range downloads
    segments.py  the yt-dlp calls: one segment, a batch of them, the Ray Data stage
"""

from sound_captions.download.archive import DownloadArchive, completed_clip_ids
from sound_captions.download.ffmpeg import ensure_ffmpeg_on_path
from sound_captions.download.options import (
    ARCHIVE_NAME,
    STAGING_DIR,
    DownloadOptions,
    DownloadOutcome,
)
from sound_captions.download.pacing import HostPacer, host_pacer
from sound_captions.download.reasons import (
    REASONS,
    backoff_delay_s,
    classify_download_error,
    is_transient_error,
)
from sound_captions.download.segments import (
    DownloadSegments,
    download_segment,
    download_segments,
    needs_download,
    source_url,
)

__all__ = [
    "ARCHIVE_NAME", "REASONS", "STAGING_DIR", "DownloadArchive", "DownloadOptions", "DownloadOutcome", "DownloadSegments",
    "HostPacer", "backoff_delay_s", "classify_download_error", "completed_clip_ids", "download_segment", "download_segments",
    "ensure_ffmpeg_on_path", "host_pacer", "is_transient_error", "needs_download", "source_url",
]
