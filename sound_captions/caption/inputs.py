"""Caption inputs: folders (recursive, by extension), s3:// prefixes, URL lists, single files →
``MediaItem``s with the relative path their outputs mirror and a version for incremental runs.

Every entry a listing finds with a media extension ends as a ``MediaItem`` or an
``InputFailure`` (hidden files as ``skipped``, unreadable ones as ``failed``), and every
``MediaItem.rel`` has gone through :func:`sound_captions.paths.safe_output_rel`, so no input
name can place an output outside the output folder."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass

from sound_captions import reasons, storage
from sound_captions.paths import safe_output_rel

MEDIA_EXTENSIONS = (
    ".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".mxf", ".flv", ".wmv",
    ".wav", ".mp3", ".m4a", ".aac", ".flac", ".ogg", ".opus",
)


@dataclass(frozen=True)
class MediaItem:
    """One medium to caption. ``rel`` is the output path without suffix (``a/b/video``), made
    safe by :func:`~sound_captions.paths.safe_output_rel` (build items with :func:`media_item`)."""

    uri: str
    rel: str
    version: str  # "size:mtime_ns" locally, "size:etag" on S3, the URL for URLs
    size_bytes: int = -1


@dataclass(frozen=True)
class InputFailure:
    """An input that yields no medium to caption; ``status`` is its report status."""

    input: str
    reason: str
    message: str
    status: str = "failed"  # or "skipped" (a hidden file)


def media_item(uri: str, name: str, version: str, size_bytes: int = -1) -> MediaItem:
    """A ``MediaItem`` for ``uri`` whose outputs mirror ``name`` (relative, with its suffix)."""
    return MediaItem(uri, safe_output_rel(_strip_suffix(name)), version, size_bytes)


def _strip_suffix(rel: str) -> str:
    base, _ = os.path.splitext(rel)
    return base


def _url_name(url: str) -> str:
    tail = re.sub(r"[^A-Za-z0-9._-]+", "_", url.split("://", 1)[-1])[-60:]
    return f"urls/{_strip_suffix(tail)}_{hashlib.sha1(url.encode()).hexdigest()[:8]}"


def discover(inputs: list[str], extensions: tuple[str, ...] = MEDIA_EXTENSIONS) -> tuple[list[MediaItem], list[InputFailure]]:
    """Expand every input into media items; a bad input becomes an ``InputFailure``.

    - a local folder or ``s3://`` prefix: every file below it with a media extension;
    - a ``.txt``/``.urls`` file: one URL per line (``#`` comments allowed);
    - an ``http(s)://`` URL or a single media file.
    """
    items: list[MediaItem] = []
    failures: list[InputFailure] = []
    for raw in inputs:
        text = str(raw).strip()
        try:
            if storage.is_url(text):
                items.append(media_item(text, _url_name(text), text))
            elif text.lower().endswith((".txt", ".urls")):
                for line in storage.read_text(text).splitlines():
                    line = line.strip()
                    if not line or line.startswith("#"):
                        continue
                    if storage.is_url(line):
                        items.append(media_item(line, _url_name(line), line))
                    elif storage.is_s3(line):
                        try:
                            info = storage.stat(line)
                        except storage.StorageError as exc:
                            failures.append(InputFailure(line, reasons.UNREADABLE, str(exc)))
                        else:
                            items.append(media_item(line, _url_name(line), f"{info.size_bytes}:{info.version}", info.size_bytes))
                    else:
                        failures.append(InputFailure(line, reasons.BAD_URI, f"not a URL (in {text})"))
            elif storage.is_s3(text) and text.lower().endswith(extensions):
                info = storage.stat(text)
                items.append(media_item(text, text.rsplit("/", 1)[-1], f"{info.size_bytes}:{info.version}", info.size_bytes))
            elif storage.is_s3(text) or storage.local_path(text).is_dir():
                found = False

                def skipped(entry: storage.ListingSkip) -> None:
                    nonlocal found
                    found = True
                    status = "skipped" if entry.reason == reasons.HIDDEN else "failed"
                    failures.append(InputFailure(entry.uri, entry.reason, entry.message, status))

                for obj in storage.list_files(text, suffixes=extensions, skipped=skipped):
                    found = True
                    rel = storage.relative_to(obj.uri, text)
                    items.append(media_item(obj.uri, rel, f"{obj.size_bytes}:{obj.version}", obj.size_bytes))
                if not found:
                    failures.append(InputFailure(text, reasons.EMPTY_INPUT, "no media files found below it"))
            else:
                info = storage.stat(text)
                items.append(media_item(text, os.path.basename(text), f"{info.size_bytes}:{info.version}", info.size_bytes))
        except storage.BadURIError as exc:
            failures.append(InputFailure(text, reasons.BAD_URI, str(exc)))
        except storage.StorageError as exc:
            failures.append(InputFailure(text, reasons.UNREADABLE, str(exc)))
    usable = []
    for item in items:
        if _is_utf8(item.uri):
            usable.append(item)
        else:  # Arrow (Ray blocks, the report) holds UTF-8 text only
            failures.append(InputFailure(item.uri, reasons.BAD_NAME, "the file name is not valid UTF-8 (rename it to caption it)"))
    return _dedupe(usable), [_displayable(f) for f in failures]


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _displayable(failure: InputFailure) -> InputFailure:
    """A name that is not UTF-8 (an undecodable local file name) is shown with ``\\xNN`` escapes."""
    if _is_utf8(failure.input):
        return failure
    shown = failure.input.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return InputFailure(shown, failure.reason, failure.message, failure.status)


def _dedupe(items: list[MediaItem]) -> list[MediaItem]:
    """Keep one item per input URI, and make output paths unique."""
    seen_uri: set[str] = set()
    used: set[str] = set()
    out = []
    for item in items:
        if item.uri in seen_uri:
            continue
        seen_uri.add(item.uri)
        rel, n = item.rel, 0
        while rel in used:  # a suffixed name may itself be taken: lengthen the suffix until free
            n += 1
            digest = hashlib.sha1(item.uri.encode("utf-8", "surrogatepass")).hexdigest()
            rel = f"{item.rel}_{digest[: 8 * n]}" if n <= 5 else f"{item.rel}_{n}"
        used.add(rel)
        out.append(MediaItem(item.uri, rel, item.version, item.size_bytes))
    return out
