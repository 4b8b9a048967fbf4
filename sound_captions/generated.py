"""Generated media with known per-second truth (ffmpeg ``lavfi`` sources, no downloads): the
demo's corpus and test videos, and the tests' media (through ``sound_captions.testing.media``).

Each segment is ``(kind, seconds)``. Kinds are synthetic stand-ins for real AudioSet classes:

=========  =====================================  =======================
kind       signal                                 AudioSet class (mid)
=========  =====================================  =======================
beep       pulsed sine tone, 600–2400 Hz          Beep, bleep (/m/02fs_r)
music      major-triad chords with harmonics,     Music (/m/04rlf)
           a new chord every 0.5 s
noise      white noise                            White noise (/m/0chx_)
silence    digital silence                        (no label)
=========  =====================================  =======================

Kinds can be mixed with ``+`` (``"beep+music"``). Parameters (pitch, gain, colour) are drawn
from a ``numpy`` generator seeded per call, so the same seed gives the same file and the global
random state is left alone.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sound_captions.audio import ffmpeg_exe

KIND_LABELS: dict[str, str] = {"beep": "/m/02fs_r", "music": "/m/04rlf", "noise": "/m/0chx_"}
KINDS = (*KIND_LABELS, "silence")

_RATE = 44_100
_MAJOR = (1.0, 5 / 4, 3 / 2)


def _beep(rng: np.random.Generator, seconds: float) -> str:
    freq = float(rng.uniform(600, 2400))
    period = float(rng.uniform(0.25, 0.6))
    duty = float(rng.uniform(0.4, 0.7))
    gain = float(rng.uniform(0.2, 0.7))
    expr = f"{gain:.3f}*sin(2*PI*{freq:.1f}*t)*lt(mod(t\\,{period:.3f})\\,{period * duty:.3f})"
    return f"aevalsrc=exprs='{expr}':s={_RATE}:d={seconds}"


def _music(rng: np.random.Generator, seconds: float) -> str:
    roots = rng.uniform(110, 330, size=4)
    gain = float(rng.uniform(0.08, 0.15))
    # A new chord every 0.5 s, cycling through 4 roots; 3 notes x 3 harmonics each.
    root = (
        f"if(lt(mod(t\\,2)\\,0.5)\\,{roots[0]:.1f}\\,if(lt(mod(t\\,2)\\,1)\\,{roots[1]:.1f}"
        f"\\,if(lt(mod(t\\,2)\\,1.5)\\,{roots[2]:.1f}\\,{roots[3]:.1f})))"
    )
    terms = []
    for ratio in _MAJOR:
        for harmonic, weight in ((1, 1.0), (2, 0.5), (3, 0.25)):
            terms.append(f"{weight}*sin(2*PI*{ratio * harmonic:.4f}*({root})*t)")
    envelope = "(0.6+0.4*exp(-6*mod(t\\,0.5)))"
    expr = f"{gain:.3f}*{envelope}*({'+'.join(terms)})"
    return f"aevalsrc=exprs='{expr}':s={_RATE}:d={seconds}"


def _noise(rng: np.random.Generator, seconds: float) -> str:
    colour = "white"
    amplitude = float(rng.uniform(0.1, 0.5))
    seed = int(rng.integers(0, 2**31 - 1))
    return f"anoisesrc=c={colour}:a={amplitude:.3f}:r={_RATE}:d={seconds}:s={seed}"


def _silence(_: np.random.Generator, seconds: float) -> str:
    return f"anullsrc=r={_RATE}:cl=mono,atrim=duration={seconds}"


_SOURCES = {"beep": _beep, "music": _music, "noise": _noise, "silence": _silence}


def segment_labels(kind: str) -> tuple[str, ...]:
    """AudioSet mids of a segment kind (``"beep+music"`` → both; ``"silence"`` → none)."""
    labels = []
    for part in kind.split("+"):
        if part not in _SOURCES:
            raise ValueError(f"unknown segment kind {part!r}; known: {', '.join(KINDS)}")
        if part in KIND_LABELS:
            labels.append(KIND_LABELS[part])
    return tuple(labels)


def per_second_truth(segments: Sequence[tuple[str, int]]) -> list[tuple[str, ...]]:
    """The labels of each second of a medium made from ``segments`` (whole seconds only)."""
    truth: list[tuple[str, ...]] = []
    for kind, seconds in segments:
        if int(seconds) != seconds:
            raise ValueError("per-second truth needs whole-second segments")
        truth.extend([segment_labels(kind)] * int(seconds))
    return truth


def make_media(
    path: str | os.PathLike,
    segments: Sequence[tuple[str, float]],
    *,
    video: bool = True,
    audio: bool = True,
    seed: int = 0,
    size: str = "160x120",
    fps: int = 10,
) -> Path:
    """Write a medium made of ``segments`` to ``path`` (container from the suffix: .mp4, .mkv,
    .webm, .wav, .m4a). ``audio=False`` writes a video without an audio stream."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not audio and not video:
        raise ValueError("a medium needs audio or video")
    rng = np.random.default_rng(seed)
    total = float(sum(s for _, s in segments))
    suffix = path.suffix.lower()
    inputs: list[str] = []
    graph: list[str] = []
    if audio:
        labels = []
        for index, (kind, seconds) in enumerate(segments):
            parts = kind.split("+")
            segment_labels(kind)  # validates
            if len(parts) == 1:
                graph.append(f"{_SOURCES[parts[0]](rng, seconds)}[s{index}]")
            else:
                names = []
                for p_index, part in enumerate(parts):
                    name = f"s{index}p{p_index}"
                    graph.append(f"{_SOURCES[part](rng, seconds)}[{name}]")
                    names.append(f"[{name}]")
                graph.append(f"{''.join(names)}amix=inputs={len(parts)}:normalize=0[s{index}]")
            labels.append(f"[s{index}]")
        graph.append(f"{''.join(labels)}concat=n={len(labels)}:v=0:a=1[aout]")
    if video and suffix not in (".wav", ".m4a", ".mp3", ".flac", ".ogg", ".opus"):
        graph.append(f"testsrc=size={size}:rate={fps}:duration={total}[vout]")
    else:
        video = False
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *inputs]
    cmd += ["-filter_complex", ";".join(graph)]
    if video:
        cmd += ["-map", "[vout]"]
        if suffix == ".webm":
            cmd += ["-c:v", "libvpx", "-b:v", "200k", "-deadline", "realtime"]
        else:
            cmd += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    if audio:
        cmd += ["-map", "[aout]"]
        if suffix == ".webm":
            cmd += ["-c:a", "libopus", "-b:a", "64k"]
        elif suffix == ".wav":
            cmd += ["-c:a", "pcm_s16le"]
        else:
            cmd += ["-c:a", "aac", "-b:a", "96k"]
    if suffix == ".mp4":
        cmd += ["-movflags", "+faststart"]
    cmd += [str(path)]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg could not make {path}: {proc.stderr.decode('utf-8', 'replace')[-2000:]}")
    return path


def make_corrupt(path: str | os.PathLike, size_bytes: int = 4096, seed: int = 0) -> Path:
    """A file with a media suffix and random bytes inside."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, size_bytes, dtype=np.uint8).tobytes())
    return path
