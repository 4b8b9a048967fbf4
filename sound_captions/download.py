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
``ffmpeg`` into a private folder put first on ``PATH``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import yt_dlp
from yt_dlp.networking.exceptions import HTTPError, TransportError

from sound_captions.paths import join_inside
from sound_captions.sources.requests import ClipRequest, Seconds

UNAVAILABLE = "unavailable"
PRIVATE = "private"
REMOVED = "removed"
THROTTLED = "throttled"
GEO_BLOCKED = "geo_blocked"
DECODE_ERROR = "decode_error"
NO_AUDIO = "no_audio"
TOO_SHORT = "too_short"
OTHER = "other"
UNSAFE_NAME = "unsafe_name"  # a clip id that cannot be a file name inside the scratch folder
REASONS = (
    UNAVAILABLE, PRIVATE, REMOVED, THROTTLED, GEO_BLOCKED, DECODE_ERROR, NO_AUDIO, TOO_SHORT, OTHER,
    UNSAFE_NAME,
)  # fmt: skip

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


# --------------------------------------------------------------------------------------------
# ffmpeg on PATH

_PATH_LOCK = threading.Lock()


def ensure_ffmpeg_on_path(exe: str | None = None) -> str:
    """Make ``ffmpeg`` on ``PATH`` resolve to *exe* (default: imageio-ffmpeg's binary).

    yt-dlp decides whether it can cut ranges by looking for an executable literally named
    ``ffmpeg`` on ``PATH``; imageio-ffmpeg ships ``ffmpeg-linux-x86_64-v…``. This links it as
    ``<tmp>/sound-captions-<uid>/bin-<hash>/ffmpeg`` and puts that folder first on ``PATH``.
    Idempotent and thread-safe; returns the link's path (use it as yt-dlp's ``ffmpeg_location``).
    """
    target = os.path.realpath(exe or imageio_ffmpeg.get_ffmpeg_exe())
    digest = hashlib.sha1(target.encode()).hexdigest()[:10]
    bindir = Path(tempfile.gettempdir()) / f"sound-captions-{os.getuid()}" / f"bin-{digest}"
    link = bindir / "ffmpeg"
    with _PATH_LOCK:
        if not (link.is_symlink() and os.readlink(link) == target):
            bindir.mkdir(parents=True, exist_ok=True)
            tmp = bindir / f".ffmpeg.{os.getpid()}.{threading.get_ident()}"
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(target)
            os.replace(tmp, link)  # atomic: other processes never see a missing link
        parts = os.environ.get("PATH", "").split(os.pathsep)
        if not parts or parts[0] != str(bindir):
            parts = [str(bindir)] + [p for p in parts if p and p != str(bindir)]
            os.environ["PATH"] = os.pathsep.join(parts)
    return str(link)


# --------------------------------------------------------------------------------------------
# Classification


_REASON_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (reason, re.compile(pattern, re.IGNORECASE))
    for reason, pattern in (
        # Order matters: YouTube prefixes most of these with "Video unavailable.", and ids or
        # URLs in a message must not look like statuses (so "HTTP Error 429", not "429").
        (THROTTLED, r"(?:HTTP Error|Server returned|error) 429|too many requests|rate[- ]limit"
                    r"|sign in to confirm you.re not a bot"),
        (PRIVATE, r"private video|video is private"),
        (GEO_BLOCKED, r"not (?:made this video )?available in your country|geo[- ]?restrict"
                      r"|geo[- ]?block"),
        (REMOVED, r"\bremoved\b|account .* terminated|terminated account|copyright"),
        (NO_AUDIO, r"matches no streams|does not contain any stream|no audio stream"),
        (DECODE_ERROR, r"invalid data found|moov atom not found|could not find codec parameters"
                       r"|error while decoding"),
        (UNAVAILABLE, r"(?:HTTP Error|Server returned) (?:404|410)|video unavailable"
                      r"|video (?:is )?not available|does not exist"),
    )
)  # fmt: skip

_TRANSIENT = re.compile(
    r"(?:HTTP Error|Server returned) 5\d\d|Server returned 5XX|timed? ?out|connection (?:reset|refused|aborted)|remote end closed"
    r"|temporary failure|incomplete ?read|broken pipe|network is unreachable",
    re.IGNORECASE,
)


def classify_download_error(message: str) -> str:
    """yt-dlp / ffmpeg error text → reason class (one of :data:`REASONS`).

    >>> classify_download_error("ERROR: [youtube] abc: Private video. Sign in if you've been granted access")
    'private'
    >>> classify_download_error("HTTP Error 429: Too Many Requests")
    'throttled'
    """
    for reason, pattern in _REASON_PATTERNS:
        if pattern.search(message):
            return reason
    return OTHER


def is_transient_error(message: str) -> bool:
    """True for errors worth retrying besides throttling (5xx, timeouts, dropped connections)."""
    return bool(_TRANSIENT.search(message)) and classify_download_error(message) == OTHER


@dataclass(frozen=True)
class _Failure:
    reason: str
    message: str
    retryable: bool
    retry_after_s: Seconds | None = None


def _failure_from_exception(exc: BaseException) -> _Failure:
    """Classify a yt-dlp exception, preferring the HTTP status found in its cause chain."""
    message = _clean(str(exc))
    status, retry_after, transport = None, None, False
    for cause in _cause_chain(exc):
        if isinstance(cause, HTTPError):
            status = cause.status
            retry_after = _parse_retry_after(cause.response.headers.get("Retry-After"))
            break
        if isinstance(cause, TransportError):
            transport = True
    if status is not None:
        if status == 429:
            return _Failure(THROTTLED, message, True, retry_after)
        if status in (404, 410):
            return _Failure(UNAVAILABLE, message, False)
        if 500 <= status < 600:
            return _Failure(OTHER, message, True, retry_after)
    reason = classify_download_error(message)
    retryable = reason == THROTTLED or (
        reason == OTHER and (transport or is_transient_error(message))
    )
    return _Failure(reason, message, retryable)


def _cause_chain(exc: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        exc_info = getattr(e, "exc_info", None)
        if isinstance(exc_info, tuple) and len(exc_info) > 1:
            todo.append(exc_info[1])
        todo.extend([getattr(e, "cause", None), e.__cause__, e.__context__])


def _parse_retry_after(value: str | None) -> Seconds | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # HTTP-date form: fall back to our own backoff


def _clean(message: str) -> str:
    message = re.sub(r"\x1b\[[0-9;]*m", "", message).strip()
    message = message.removeprefix("ERROR:").strip()
    return message[:_MAX_MESSAGE_CHARS]


def backoff_delay_s(
    attempt: int,
    options: DownloadOptions,
    rng: random.Random,
    retry_after_s: Seconds | None = None,
) -> Seconds:
    """Delay before retry number *attempt* (1-based): ``min(max, base·2^(attempt-1))``, of which
    a ``jitter`` fraction is drawn at random; at least ``Retry-After`` (capped by ``max``)."""
    ceiling = min(options.backoff_max_s, options.backoff_base_s * 2.0 ** (attempt - 1))
    delay = ceiling * (1.0 - options.jitter * rng.random())
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, options.backoff_max_s))
    return delay


# --------------------------------------------------------------------------------------------
# Pacing


class HostPacer:
    """Spaces attempt starts to each host at least ``min_interval_s`` apart (thread-safe).

    Slots are handed out under a lock, the waiting happens outside it, so callers queue fairly.
    One pacer per process (see :func:`host_pacer`): Ray workers do not coordinate, so the global
    rate to a host is up to ``n_workers / min_interval_s`` starts per second.
    """

    def __init__(self, min_interval_s: Seconds, *, clock: Callable[[], float] = time.monotonic):
        self.min_interval_s = min_interval_s
        self._clock = clock
        self._next: dict[str, float] = {}
        self._lock = threading.Lock()

    def wait(self, host: str, sleep: Callable[[float], None] = time.sleep) -> Seconds:
        """Block until *host* may be contacted; returns the seconds waited."""
        if self.min_interval_s <= 0:
            return 0.0
        with self._lock:
            now = self._clock()
            slot = max(now, self._next.get(host, now))
            self._next[host] = slot + self.min_interval_s
        delay = slot - now
        if delay > 0:
            sleep(delay)
        return delay


_PACERS: dict[float, HostPacer] = {}
_PACERS_LOCK = threading.Lock()


def host_pacer(min_interval_s: Seconds) -> HostPacer:
    """The process-wide pacer for one interval (shared by all threads of a worker)."""
    with _PACERS_LOCK:
        pacer = _PACERS.get(min_interval_s)
        if pacer is None:
            pacer = _PACERS[min_interval_s] = HostPacer(min_interval_s)
        return pacer


# --------------------------------------------------------------------------------------------
# Archive of completed clips


class DownloadArchive:
    """Append-only JSON-lines record of completed clips, safe for threads and processes.

    Each line: ``{"clip_id", "file", "bytes", "url", "start_s", "end_s", "attempts"}`` with
    ``file`` relative to the scratch folder. Lines are appended under an exclusive ``flock`` and
    fsynced; a torn last line (killed mid-write) is ignored on reading.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._entries: dict[str, dict[str, Any]] = {}
        self._read_bytes = 0

    def _refresh(self) -> None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size <= self._read_bytes:
            return
        with open(self.path, "rb") as f:
            f.seek(self._read_bytes)
            data = f.read()
        complete = data[: data.rfind(b"\n") + 1]  # leave a partial last line for later
        for line in complete.splitlines():
            try:
                entry = json.loads(line)
                self._entries[str(entry["clip_id"])] = entry
            except (ValueError, KeyError, TypeError):
                continue  # torn or foreign line
        self._read_bytes += len(complete)

    def get(self, clip_id: str) -> dict[str, Any] | None:
        with self._lock:
            self._refresh()
            return self._entries.get(clip_id)

    def record(self, entry: dict[str, Any]) -> None:
        line = (json.dumps(entry, sort_keys=True) + "\n").encode()
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                end = os.lseek(fd, 0, os.SEEK_END)
                if end and os.pread(fd, 1, end - 1) != b"\n":
                    line = b"\n" + line  # close a line torn by a killed writer
                os.write(fd, line)
                os.fsync(fd)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
            self._refresh()

    def clip_ids(self) -> set[str]:
        with self._lock:
            self._refresh()
            return set(self._entries)


_ARCHIVES: dict[str, DownloadArchive] = {}
_ARCHIVES_LOCK = threading.Lock()


def _archive_for(options: DownloadOptions) -> DownloadArchive:
    key = str(options.resolved_archive_path.resolve())
    with _ARCHIVES_LOCK:
        archive = _ARCHIVES.get(key)
        if archive is None:
            archive = _ARCHIVES[key] = DownloadArchive(key)
        return archive


def completed_clip_ids(options: DownloadOptions) -> set[str]:
    """Clip ids the archive lists as completed (files not checked)."""
    return _archive_for(options).clip_ids()


# --------------------------------------------------------------------------------------------
# The stage


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
