"""Cues → WebVTT text (webvtt-py), placed at the top of the frame; and a WebVTT text checked
against the caption style (the rules themselves are in ``style.py``).

Timestamps come from integer milliseconds, formatted once (never from float seconds, which is
how ``59.9996`` becomes ``00:00:60.000``).
"""

from __future__ import annotations

from collections.abc import Iterable

import webvtt

from sound_captions.caption.cues import Cue, read_cues
from sound_captions.caption.style import (
    MAX_CUE_MS,
    MAX_LINE_CHARS,
    MAX_LINES,
    MIN_CUE_MS,
    TOP_SETTINGS,
    check_caption_text,
    wrap_caption,
)


def format_timestamp(ms: int) -> str:
    """Integer milliseconds → ``HH:MM:SS.mmm``."""
    if ms < 0:
        raise ValueError("negative timestamp")
    hours, rest = divmod(int(ms), 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}"


def cues_to_webvtt(cues: Iterable[Cue], settings: str = TOP_SETTINGS) -> webvtt.WebVTT:
    doc = webvtt.WebVTT()
    for index, cue in enumerate(sorted(cues, key=lambda c: (c.start_ms, c.end_ms, c.text)), start=1):
        doc.captions.append(
            webvtt.Caption(
                start=format_timestamp(cue.start_ms),
                end=format_timestamp(cue.end_ms),
                text=wrap_caption(cue.text),
                identifier=f"sound-{index}",
                settings=settings,
            )
        )
    return doc


def render_vtt(cues: Iterable[Cue], settings: str = TOP_SETTINGS) -> str:
    """Cues → the text of a WebVTT file."""
    text = cues_to_webvtt(cues, settings).content
    return text if text.endswith("\n") else text + "\n"


def style_violations(vtt_text: str, *, min_ms: int = MIN_CUE_MS, max_ms: int = MAX_CUE_MS) -> list[str]:
    """Every way the sound cues of a WebVTT text break the caption style (empty: none)."""
    problems = []
    for cue in read_cues(vtt_text):
        where = f"cue {cue.identifier or ''} {format_timestamp(cue.start_ms)}-{format_timestamp(cue.end_ms)}"
        if cue.duration_ms < min_ms:
            problems.append(f"{where}: shorter than {min_ms} ms")
        if cue.duration_ms > max_ms:
            problems.append(f"{where}: longer than {max_ms} ms")
        if len(cue.lines) > MAX_LINES or any(len(line) > MAX_LINE_CHARS for line in cue.lines):
            problems.append(f"{where}: more than {MAX_LINES} lines of {MAX_LINE_CHARS} characters")
        try:
            check_caption_text(" ".join(cue.lines))
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
        if "line:0" not in cue.settings:
            problems.append(f"{where}: not placed at the top (line:0)")
    return problems
