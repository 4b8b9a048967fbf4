"""The archive of completed clips: what a rerun never fetches again."""

from __future__ import annotations

import fcntl
import json
import os
import threading
from pathlib import Path
from typing import Any

from sound_captions.download.options import (
    DownloadOptions,
)


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
