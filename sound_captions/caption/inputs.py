"""Caption inputs: folders (recursive, by extension), s3:// prefixes, URL lists, single files →
``MediaItem``s with the relative path their outputs mirror and a version for incremental runs."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass

from sound_captions import storage

MEDIA_EXTENSIONS = (
    ".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".mxf", ".flv", ".wmv",
    ".wav", ".mp3", ".m4a", ".aac", ".flac", ".ogg", ".opus",
)


@dataclass(frozen=True)
class MediaItem:
    """One medium to caption. ``rel`` is the output path without suffix (``a/b/video``)."""

    uri: str
    rel: str
    version: str  # "size:mtime_ns" locally, "size:etag" on S3, the URL for URLs
    size_bytes: int = -1


@dataclass(frozen=True)
class InputFailure:
    input: str
    reason: str
    message: str


def _strip_suffix(rel: str) -> str:
    base, _ = os.path.splitext(rel)
    return base


def _url_rel(url: str) -> str:
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
                items.append(MediaItem(text, _url_rel(text), text))
            elif text.lower().endswith((".txt", ".urls")):
                for line in storage.read_text(text).splitlines():
                    line = line.strip()
                    if not line or line.startswith("#"):
                        continue
                    if storage.is_url(line):
                        items.append(MediaItem(line, _url_rel(line), line))
                    elif storage.is_s3(line):
                        try:
                            info = storage.stat(line)
                        except storage.StorageError as exc:
                            failures.append(InputFailure(line, "unreadable", str(exc)))
                        else:
                            items.append(MediaItem(line, _url_rel(line), f"{info.size_bytes}:{info.version}", info.size_bytes))
                    else:
                        failures.append(InputFailure(line, "bad_uri", f"not a URL (in {text})"))
            elif storage.is_s3(text) and text.lower().endswith(extensions):
                info = storage.stat(text)
                items.append(MediaItem(text, _strip_suffix(text.rsplit("/", 1)[-1]), f"{info.size_bytes}:{info.version}", info.size_bytes))
            elif storage.is_s3(text) or storage.local_path(text).is_dir():
                found = False
                for obj in storage.list_files(text, suffixes=extensions):
                    found = True
                    rel = _strip_suffix(storage.relative_to(obj.uri, text))
                    items.append(MediaItem(obj.uri, rel, f"{obj.size_bytes}:{obj.version}", obj.size_bytes))
                if not found:
                    failures.append(InputFailure(text, "empty_input", "no media files found below it"))
            else:
                info = storage.stat(text)
                items.append(MediaItem(text, _strip_suffix(os.path.basename(text)), f"{info.size_bytes}:{info.version}", info.size_bytes))
        except storage.BadURIError as exc:
            failures.append(InputFailure(text, "bad_uri", str(exc)))
        except storage.StorageError as exc:
            failures.append(InputFailure(text, "unreadable", str(exc)))
    return _dedupe(items), failures


def _dedupe(items: list[MediaItem]) -> list[MediaItem]:
    """Keep one item per input URI, and make output paths unique."""
    seen_uri: set[str] = set()
    used: set[str] = set()
    out = []
    for item in items:
        if item.uri in seen_uri:
            continue
        seen_uri.add(item.uri)
        rel = item.rel
        if rel in used:
            rel = f"{rel}_{hashlib.sha1(item.uri.encode()).hexdigest()[:8]}"
        used.add(rel)
        out.append(MediaItem(item.uri, rel, item.version, item.size_bytes))
    return out
