"""Video file → a file the preview page's ``<video>`` can play (copy, link or WebM proxy).

What a browser can decode was measured, not assumed: Debian's Chromium 156 (the browser of the
preview tests), opening the page from ``file://``, was given one file per container/codec pair
made with ffmpeg. It plays H.264 (8-bit 4:2:0, 4:4:4 and 10-bit), VP8, VP9 and AV1 video and AAC,
MP3, Opus, Vorbis, FLAC and PCM audio in MP4/MOV, WebM/Matroska, Ogg, MP3, WAV and FLAC files.
It *silently drops the picture* of MPEG-4 Part 2, HEVC, Theora and ProRes (the audio plays,
``videoWidth`` stays 0), silently drops AC-3 audio, and refuses AVI and MPEG-PS files outright
(``MEDIA_ERR_SRC_NOT_SUPPORTED``). :func:`is_browser_playable` encodes that table;
:func:`write_proxy` makes a small WebM (VP9 + Opus, at most 480 lines) for everything else, so a
camcorder ``.avi`` or an HEVC phone video still gets a watchable preview.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

Seconds = float

#: Containers (ffmpeg demuxer names, as in ``Input #0, <names>, from``) the browser opens.
PLAYABLE_CONTAINERS: frozenset[str] = frozenset(
    {"mov", "mp4", "m4a", "matroska", "webm", "ogg", "mp3", "wav", "flac"}
)
#: Video codecs (ffmpeg names) whose picture the browser decodes.
PLAYABLE_VIDEO_CODECS: frozenset[str] = frozenset({"h264", "vp8", "vp9", "av1"})
#: Audio codecs (ffmpeg names) the browser decodes.
PLAYABLE_AUDIO_CODECS: frozenset[str] = frozenset(
    {"aac", "mp3", "opus", "vorbis", "flac", "pcm_s16le", "pcm_s24le", "pcm_f32le"}
)

#: Proxy settings: VP9 + Opus in WebM, royalty-free and decoded by Chromium and Firefox builds
#: without proprietary codecs. Height is capped, realtime VP9 keeps the encode fast.
PROXY_SUFFIX = ".preview.webm"
PROXY_MAX_HEIGHT_PX = 480


class PreviewMediaError(RuntimeError):
    """The video could not be probed, copied or transcoded; the message carries ffmpeg's stderr."""


@dataclass(frozen=True)
class MediaProbe:
    """What ffmpeg reports about a media file.

    ``containers`` are the demuxer names (``("mov", "mp4", ...)``), ``video_codecs`` exclude
    attached pictures (cover art), ``duration_s`` is ``None`` when the container gives none.
    """

    containers: tuple[str, ...]
    duration_s: Seconds | None
    video_codecs: tuple[str, ...]
    audio_codecs: tuple[str, ...]

    @property
    def has_video(self) -> bool:
        return bool(self.video_codecs)


def ffmpeg_exe() -> str:
    """The ffmpeg binary: the project's choice when available, else imageio-ffmpeg's."""
    try:
        from sound_captions.audio import ffmpeg_exe as project_ffmpeg_exe
    except ImportError:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    return project_ffmpeg_exe()


_INPUT_RE = re.compile(r"^Input #0, (?P<names>[^ ]+), from ", re.MULTILINE)
_DURATION_RE = re.compile(r"Duration: (?P<h>\d+):(?P<m>\d\d):(?P<s>\d\d)\.(?P<cs>\d\d)")
_STREAM_RE = re.compile(
    r"^\s*Stream #0:\d+.*?: (?P<kind>Video|Audio): (?P<codec>[A-Za-z0-9_]+)(?P<rest>.*)$",
    re.MULTILINE,
)


def parse_probe(ffmpeg_stderr: str) -> MediaProbe:
    """Parse the stream summary that ``ffmpeg -i FILE`` prints to stderr."""
    match = _INPUT_RE.search(ffmpeg_stderr)
    if match is None:
        raise PreviewMediaError(f"ffmpeg did not recognise the media:\n{ffmpeg_stderr[-2000:]}")
    containers = tuple(match.group("names").rstrip(",").split(","))
    duration_s: Seconds | None = None
    dur = _DURATION_RE.search(ffmpeg_stderr)
    if dur is not None:
        centis = ((int(dur["h"]) * 60 + int(dur["m"])) * 60 + int(dur["s"])) * 100 + int(dur["cs"])
        duration_s = centis / 100
    video: list[str] = []
    audio: list[str] = []
    for stream in _STREAM_RE.finditer(ffmpeg_stderr):
        if stream["kind"] == "Video":
            if "(attached pic)" not in stream["rest"]:
                video.append(stream["codec"])
        else:
            audio.append(stream["codec"])
    return MediaProbe(containers, duration_s, tuple(video), tuple(audio))


def probe_media(path: str | os.PathLike) -> MediaProbe:
    """Probe a local media file with ``ffmpeg -i`` (there is no ffprobe in the environment)."""
    path = Path(path)
    if not path.is_file():
        raise PreviewMediaError(f"video not found: {path}")
    proc = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
    )
    return parse_probe(proc.stderr)


def is_browser_playable(probe: MediaProbe) -> bool:
    """True when the browser decodes the first video stream's picture and the first audio stream.

    Only the first stream of each kind matters: it is the one ``<video>`` plays.
    """
    if not set(probe.containers) & PLAYABLE_CONTAINERS:
        return False
    if probe.video_codecs and probe.video_codecs[0] not in PLAYABLE_VIDEO_CODECS:
        return False
    return not (probe.audio_codecs and probe.audio_codecs[0] not in PLAYABLE_AUDIO_CODECS)


def write_proxy(src: str | os.PathLike, dst: str | os.PathLike, probe: MediaProbe) -> Path:
    """Transcode ``src`` to a WebM proxy at ``dst`` (VP9 ≤480 lines + Opus), atomically.

    Timestamps are kept, so second *k* of the proxy is second *k* of the source and the captions
    stay aligned.
    """
    dst = Path(dst)
    part = dst.with_name(dst.name + ".part")
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i", str(src)]
    cmd += ["-map", "0:V:0?", "-map", "0:a:0?", "-sn", "-dn", "-threads", "2"]
    if probe.has_video:
        cmd += [
            "-vf", f"scale=-2:'min({PROXY_MAX_HEIGHT_PX},ih)'", "-pix_fmt", "yuv420p",
            "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-row-mt", "1",
            "-crf", "36", "-b:v", "0",
        ]  # fmt: skip
    if probe.audio_codecs:
        cmd += ["-c:a", "libopus", "-b:a", "96k", "-ac", "2"]
    cmd += ["-f", "webm", str(part)]
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", check=False)
    if proc.returncode != 0:
        part.unlink(missing_ok=True)
        raise PreviewMediaError(
            f"ffmpeg could not make a preview proxy of {src}:\n{proc.stderr[-2000:]}"
        )
    os.replace(part, dst)
    return dst


def copy_file(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy a local file atomically (temporary name in the target folder, then rename)."""
    dst = Path(dst)
    part = dst.with_name(dst.name + ".part")
    shutil.copyfile(src, part)
    os.replace(part, dst)
    return dst


def copy_bytes(data: bytes, dst: str | os.PathLike) -> Path:
    """Write bytes to a local file atomically (temporary name in the target folder, then rename)."""
    dst = Path(dst)
    part = dst.with_name(dst.name + ".part")
    part.write_bytes(data)
    os.replace(part, dst)
    return dst
