"""The failure reasons of a download (:data:`REASONS`), how yt-dlp's and ffmpeg's messages map
to them, which errors are worth retrying and how long to wait."""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass

from yt_dlp.networking.exceptions import HTTPError, TransportError

from sound_captions.download.options import (
    _MAX_MESSAGE_CHARS,
    DownloadOptions,
)
from sound_captions.reasons import (  # the shared vocabulary
    DECODE_ERROR,
    GEO_BLOCKED,
    NO_AUDIO,
    OTHER,
    PRIVATE,
    REMOVED,
    THROTTLED,
    TOO_SHORT,
    UNAVAILABLE,
    UNSAFE_NAME,
)
from sound_captions.sources.requests import Seconds

REASONS = (
    UNAVAILABLE, PRIVATE, REMOVED, THROTTLED, GEO_BLOCKED, DECODE_ERROR, NO_AUDIO, TOO_SHORT, OTHER,
    UNSAFE_NAME,
)  # fmt: skip


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
