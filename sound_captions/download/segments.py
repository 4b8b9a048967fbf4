"""Download stage: :class:`~sound_captions.sources.requests.ClipRequest` → audio segment file in a
scratch directory, or a classified failure (:class:`DownloadOutcome`).

Only the requested segment is fetched (yt-dlp ``download_ranges``, which hands the cut to ffmpeg
reading the remote media with HTTP range requests), audio only, into a per-clip staging folder
that is renamed into place when complete::

    <scratch>/<clip_id>.<ext>              finished segment (e.g. ``abc_30000.m4a`` / ``.mp4``)
    <scratch>/.part/<clip_id>/             staging of the attempt in progress (discarded on retry)
    <scratch>/download-archive.jsonl       one JSON line per completed clip, written last

Resumability: a clip counts as done when the archive has its line *and* the file is there with
the recorded size. A killed run leaves at most a staging folder (discarded) or a renamed file
without an archive line (downloaded again); a rerun never fetches a completed clip twice.
yt-dlp's own ``download_archive`` is deliberately not used: its key is ``<extractor> <video
id>``, so the second segment of one video would be skipped silently as "already recorded".

Politeness: attempts to one host start at least ``per_host_min_interval_s`` apart (per process:
across Ray workers the global rate is ``workers × threads-per-worker`` bounded by ``workers /
per_host_min_interval_s`` starts per second). Throttling (HTTP 429) and transient errors are
retried by *this* module with exponential backoff and jitter (yt-dlp's internal retries are set to
zero so every attempt is counted and every 429 is seen); ``Retry-After`` is honoured up to
``backoff_max_s``.

Failure reasons (:data:`REASONS`): ``unavailable`` (404/410, "Video unavailable"), ``private``,
``removed`` (removed, terminated account, copyright), ``throttled`` (429 after all retries),
``geo_blocked``, ``decode_error`` (ffmpeg cannot parse the media), ``no_audio`` (no audio stream),
``too_short`` (segment starts past the end), ``other`` (anything else, message kept).

yt-dlp runs ffmpeg with ``-loglevel quiet`` and reports only "ffmpeg exited with code N"; when
that happens, one short ffmpeg probe of the selected format's URL (with our own stderr capture)
tells ``decode_error`` and ``no_audio`` apart from network trouble, and its words go into the
message. Whole-file requests (no range) are also sent through ffmpeg when ``audio_only``.

yt-dlp finds ffmpeg for ``download_ranges`` on ``PATH`` only (its check ignores
``ffmpeg_location``), so :func:`ensure_ffmpeg_on_path` links imageio-ffmpeg's binary as
``ffmpeg`` into a private folder put first on ``PATH``."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import random
import shutil
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yt_dlp

from sound_captions.download.archive import DownloadArchive, _archive_for
from sound_captions.download.ffmpeg import ensure_ffmpeg_on_path
from sound_captions.download.options import (
    _SAFE_ID,
    ARCHIVE_NAME,
    STAGING_DIR,
    DownloadOptions,
    DownloadOutcome,
)
from sound_captions.download.pacing import host_pacer
from sound_captions.download.reasons import (
    NO_AUDIO,
    OTHER,
    THROTTLED,
    TOO_SHORT,
    UNSAFE_NAME,
    _clean,
    _Failure,
    _failure_from_exception,
    backoff_delay_s,
    classify_download_error,
    is_transient_error,
)
from sound_captions.paths import join_inside
from sound_captions.sources.requests import ClipRequest


def needs_download(request: ClipRequest) -> bool:
    """True for ``yt:`` and http(s) sources; storage URIs are read in place by the decoder."""
    return request.ytid is not None or request.source.startswith(("http://", "https://"))


def source_url(request: ClipRequest, options: DownloadOptions) -> str:
    """The URL yt-dlp is given for *request* (``yt:`` ids go through the URL template)."""
    ytid = request.ytid
    if ytid is None:
        return request.source
    return options.source_url_template.format(
        ytid=urllib.parse.quote(ytid, safe="-_"), clip_id=request.clip_id
    )


def download_segment(
    request: ClipRequest,
    options: DownloadOptions,
    *,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> DownloadOutcome:
    """Fetch the audio of ``[start_s, end_s)`` of *request* into ``<scratch>/<clip_id>.<ext>``.

    Never raises for per-item problems: unavailable media, throttling, corrupt files, network
    errors and unexpected yt-dlp errors all end as a failed :class:`DownloadOutcome` with a
    reason from :data:`REASONS`. One clip id must not be downloaded by two callers at once
    (request lists have unique ids).
    """
    if not needs_download(request):
        return DownloadOutcome(
            request.clip_id, True, request.source, None, "read in place, not downloaded", 0, False
        )
    url = source_url(request, options)
    if not _SAFE_ID.fullmatch(request.clip_id) or request.clip_id == ARCHIVE_NAME.split(".")[0]:
        return DownloadOutcome(
            request.clip_id, False, None, UNSAFE_NAME,
            f"clip_id {request.clip_id!r} is not a safe file name (1-200 of [A-Za-z0-9_.-], "
            "not starting with '.'); refused so that no file is written outside the scratch folder",
            0, False, url,
        )  # fmt: skip
    scratch = Path(options.scratch_dir)
    archive = _archive_for(options)
    cached = _cached_path(archive, request.clip_id, scratch)
    if cached is not None:
        return DownloadOutcome(request.clip_id, True, str(cached), None, "", 0, True, url)

    rng = rng or random.Random()
    pacer = host_pacer(options.per_host_min_interval_s)
    host = urllib.parse.urlsplit(url).netloc.lower()
    staging = Path(join_inside(scratch / STAGING_DIR, request.clip_id))
    attempts = 0
    try:
        while True:
            attempts += 1
            shutil.rmtree(staging, ignore_errors=True)  # a killed run's .part is never resumed
            staging.mkdir(parents=True, exist_ok=True)
            pacer.wait(host, sleep)
            result = _attempt(request, url, options, staging)
            if isinstance(result, Path):
                final = Path(join_inside(scratch, f"{request.clip_id}{result.suffix}"))
                os.replace(result, final)
                archive.record(
                    {
                        "clip_id": request.clip_id,
                        "file": final.name,
                        "bytes": final.stat().st_size,
                        "url": url,
                        "start_s": request.start_s,
                        "end_s": request.end_s,
                        "attempts": attempts,
                    }
                )
                return DownloadOutcome(
                    request.clip_id, True, str(final), None, "", attempts, False, url
                )
            if not result.retryable or attempts > options.retries:
                message = result.message
                if result.retryable:
                    message = f"gave up after {attempts} attempts: {message}"
                return DownloadOutcome(
                    request.clip_id, False, None, result.reason, message, attempts, False, url
                )
            sleep(backoff_delay_s(attempts, options, rng, result.retry_after_s))
    except Exception as e:  # noqa: BLE001 - the stage's contract: per-item problems never raise
        return DownloadOutcome(
            request.clip_id, False, None, OTHER,
            _clean(f"{type(e).__name__}: {e}"), attempts, False, url,
        )  # fmt: skip
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def download_segments(
    requests: Sequence[ClipRequest], options: DownloadOptions, *, max_workers: int = 4
) -> list[DownloadOutcome]:
    """:func:`download_segment` for many requests on *max_workers* threads; results in order."""
    if max_workers <= 1 or len(requests) <= 1:
        return [download_segment(r, options) for r in requests]
    with concurrent.futures.ThreadPoolExecutor(max_workers=max_workers) as pool:
        return list(pool.map(lambda r: download_segment(r, options), requests))


class DownloadSegments:
    """Ray Data adapter for ``map_batches``: a batch of request rows (columns of
    :meth:`ClipRequest.to_row`) → the same rows plus ``download_ok``, ``download_path``,
    ``download_reason``, ``download_message``, ``download_attempts``, ``download_from_cache``,
    ``download_url``. Threads inside a worker give the per-worker concurrency.

    Use with ``fn_constructor_kwargs={"options": options.to_dict(), "max_workers": n}``.
    """

    def __init__(self, options: DownloadOptions | dict[str, Any], max_workers: int = 4) -> None:
        self.options = (
            options if isinstance(options, DownloadOptions) else DownloadOptions.from_dict(options)
        )
        self.max_workers = max_workers
        ensure_ffmpeg_on_path(self.options.ffmpeg_location)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        columns = list(batch)
        n = len(batch[columns[0]]) if columns else 0
        rows = [{c: batch[c][i] for c in columns} for i in range(n)]
        outcomes = download_segments(
            [ClipRequest.from_row(r) for r in rows], self.options, max_workers=self.max_workers
        )
        out: dict[str, list[Any]] = {c: [_plain(r[c]) for r in rows] for c in columns}
        for f in dataclasses.fields(DownloadOutcome):
            if f.name != "clip_id":
                out[f"download_{f.name}"] = [getattr(o, f.name) for o in outcomes]
        return out


def _plain(value: Any) -> Any:
    tolist = getattr(value, "tolist", None)
    return tolist() if callable(tolist) else value


def _cached_path(archive: DownloadArchive, clip_id: str, scratch: Path) -> Path | None:
    entry = archive.get(clip_id)
    if entry is None:
        return None
    try:  # the archive may be shared: a "file" that would leave the scratch folder is ignored
        path = Path(join_inside(scratch, str(entry.get("file", ""))))
        if path.is_file() and path.stat().st_size == int(entry.get("bytes", -1)):
            return path
    except (OSError, ValueError):
        return None
    return None


class _CapturingLogger:
    """yt-dlp logger that keeps warnings and errors (debug/info are dropped)."""

    def __init__(self) -> None:
        self.warnings: list[str] = []
        self.errors: list[str] = []

    def debug(self, msg: str) -> None:
        pass

    def info(self, msg: str) -> None:
        pass

    def warning(self, msg: str) -> None:
        self.warnings.append(msg)

    def error(self, msg: str) -> None:
        if msg.strip():
            self.errors.append(msg)


def _ydl_params(
    request: ClipRequest, options: DownloadOptions, staging: Path, logger: _CapturingLogger
) -> dict[str, Any]:
    ffmpeg = ensure_ffmpeg_on_path(options.ffmpeg_location)
    timeout_us = str(int(options.socket_timeout_s * 1_000_000))
    ffmpeg_args: dict[str, list[str]] = {"ffmpeg_i": ["-rw_timeout", timeout_us]}
    if options.audio_only:
        ffmpeg_args["ffmpeg_o"] = ["-vn", "-sn", "-dn"]
    params: dict[str, Any] = {
        "format": options.format,
        "outtmpl": {"default": str(staging / f"{request.clip_id}.%(ext)s")},
        "logger": logger,
        "quiet": True,
        "noprogress": True,
        "noplaylist": True,
        "ignoreerrors": False,
        # our loop retries with backoff, counts attempts and sees every 429
        "retries": 0,
        "fragment_retries": 0,
        "extractor_retries": 0,
        "file_access_retries": 0,
        "socket_timeout": options.socket_timeout_s,
        "continuedl": False,
        "overwrites": True,
        "fixup": "never",  # fixups would need ffprobe, which imageio-ffmpeg does not ship
        "cachedir": False,
        "ffmpeg_location": ffmpeg,
        "external_downloader_args": ffmpeg_args,
        "force_keyframes_at_cuts": options.force_keyframes_at_cuts,
    }
    if options.audio_only:
        # Ranges always go through ffmpeg; whole files would go through yt-dlp's byte copier,
        # which cannot drop the video of a combined format, so send those to ffmpeg as well.
        params["external_downloader"] = {"default": "ffmpeg"}
    if request.start_s is not None or request.end_s is not None:
        start = request.start_s or 0.0
        end = float("inf") if request.end_s is None else request.end_s
        params["download_ranges"] = yt_dlp.utils.download_range_func(None, [(start, end)])
    if options.cookies_file:
        params["cookiefile"] = options.cookies_file
    if options.proxy:
        params["proxy"] = options.proxy
    return params


def _attempt(
    request: ClipRequest, url: str, options: DownloadOptions, staging: Path
) -> Path | _Failure:
    """One yt-dlp run: extract, check the range, download into *staging*."""
    logger = _CapturingLogger()
    params = _ydl_params(request, options, staging, logger)
    with yt_dlp.YoutubeDL(params) as ydl:
        try:
            info = ydl.extract_info(url, download=False)
        except yt_dlp.utils.DownloadError as e:
            return _failure_from_exception(e)
        duration = info.get("duration") if isinstance(info, dict) else None
        if duration is not None and request.start_s is not None and request.start_s >= duration:
            return _Failure(
                TOO_SHORT,
                f"segment starts at {request.start_s} s but the media lasts {duration} s",
                False,
            )
        try:
            ydl.process_ie_result(info, download=True)
        except yt_dlp.utils.DownloadError as e:
            failure = _failure_from_exception(e)
            if "ffmpeg exited with code" in failure.message:
                return _diagnose_ffmpeg_failure(failure, info, options)
            return failure
    produced = [
        p for p in staging.iterdir()
        if p.is_file() and p.name.startswith(request.clip_id + ".")
        and not p.name.endswith((".part", ".ytdl", ".temp"))
    ]  # fmt: skip
    if len(produced) != 1:
        warnings = "; ".join(_clean(w) for w in logger.warnings[-3:])
        return _Failure(
            OTHER,
            f"yt-dlp reported success but produced {len(produced)} files"
            + (f" (warnings: {warnings})" if warnings else ""),
            False,
        )
    if produced[0].stat().st_size == 0:
        return _Failure(NO_AUDIO, "yt-dlp produced an empty file", False)
    return produced[0]


def _diagnose_ffmpeg_failure(
    failure: _Failure, info: dict[str, Any], options: DownloadOptions
) -> _Failure:
    """yt-dlp runs ffmpeg with ``-loglevel quiet``, so its reason is lost ("ffmpeg exited with
    code 183"). Ask ffmpeg again, briefly and with our own capture, what it makes of the selected
    format's URL: the media's own state (no audio, undecodable) or the network's."""
    fmt = (info.get("requested_formats") or [info])[0]
    media_url = fmt.get("url") or info.get("url")
    if not media_url:
        return failure
    headers = fmt.get("http_headers") or info.get("http_headers") or {}
    cmd = [ensure_ffmpeg_on_path(options.ffmpeg_location), "-hide_banner", "-nostdin"]
    cmd += ["-loglevel", "error", "-rw_timeout", str(int(options.socket_timeout_s * 1_000_000))]
    if headers:
        cmd += ["-headers", "".join(f"{k}: {v}\r\n" for k, v in headers.items())]
    cmd += ["-i", media_url, "-map", "0:a:0", "-t", "0.1", "-f", "null", "-"]
    env = None
    if options.proxy:
        env = {**os.environ, "http_proxy": options.proxy, "HTTP_PROXY": options.proxy}
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, errors="replace", env=env,
            timeout=options.socket_timeout_s + 10,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return _Failure(OTHER, f"{failure.message}; ffmpeg probe timed out", True)
    lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
    detail = " | ".join(lines[:4]) or f"exit code {proc.returncode}"
    message = f"{failure.message}; ffmpeg probe of the media: {detail}"
    if proc.returncode == 0:
        # the audio reads fine now: the download failed for a passing reason
        return _Failure(OTHER, message, True)
    reason = classify_download_error(proc.stderr)
    retryable = reason == THROTTLED or (reason == OTHER and is_transient_error(proc.stderr))
    return _Failure(reason, message, retryable)
