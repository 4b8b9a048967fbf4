"""An executable named ``ffmpeg`` on ``PATH``, as yt-dlp's ``download_ranges`` needs."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
from pathlib import Path

import imageio_ffmpeg

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
