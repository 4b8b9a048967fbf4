"""Caption fetch: an http(s) URL → a local media file (yt-dlp, whole file, audio only), for the
decode stage on the same worker; other URIs pass through unchanged.

The file lives in a scratch folder that is removed when the ``with`` block ends, so a worker
holds at most the one medium it is decoding.
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

from sound_captions import reasons, storage


class FetchError(RuntimeError):
    """yt-dlp could not fetch a URL. ``reason`` is the download stage's reason class
    (``unavailable``, ``private``, ``throttled``, ...)."""

    def __init__(self, url: str, reason: str, message: str):
        super().__init__(f"{url}: {message}")
        self.reason = reason


@dataclass(frozen=True)
class FetchOptions:
    """yt-dlp settings for URL inputs (a subset of ``download.DownloadOptions``).

    Attributes:
        scratch_dir: parent of the per-URL scratch folders (default: the system temp dir).
        retries: extra attempts for throttling and transient errors (not for a 404).
        backoff_base_s: delay before the first retry, doubling per retry.
        socket_timeout_s: network timeout of yt-dlp and ffmpeg.
        cookies_file: Netscape cookies file for yt-dlp.
        proxy: proxy URL for yt-dlp.
    """

    scratch_dir: str | None = None
    retries: int = 2
    backoff_base_s: float = 1.0
    socket_timeout_s: float = 30.0
    cookies_file: str | None = None
    proxy: str | None = None


@contextlib.contextmanager
def fetched(uri: str, options: FetchOptions | None = None) -> Iterator[str]:
    """Yield something ffmpeg can read for ``uri``: the URI itself for local paths and
    ``s3://`` objects, or a fetched local copy of an http(s) URL. Raises :class:`FetchError`."""
    if not storage.is_url(uri):
        yield uri
        return
    from sound_captions.download import DownloadOptions, download_segment
    from sound_captions.sources.requests import ClipRequest

    options = options or FetchOptions()
    clip_id = "url-" + hashlib.sha1(uri.encode()).hexdigest()[:16]
    with tempfile.TemporaryDirectory(prefix="sc-fetch-", dir=options.scratch_dir) as scratch:
        outcome = download_segment(
            ClipRequest(clip_id=clip_id, source=uri, start_s=None, end_s=None, labels=(), origin="caption input"),
            DownloadOptions(
                scratch_dir=scratch, retries=options.retries, backoff_base_s=options.backoff_base_s,
                socket_timeout_s=options.socket_timeout_s, cookies_file=options.cookies_file, proxy=options.proxy,
                audio_only=True,
            ),
        )
        if not outcome.ok or outcome.path is None:
            raise FetchError(uri, outcome.reason or reasons.OTHER, outcome.message)
        yield outcome.path
