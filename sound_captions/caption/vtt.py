"""Cues → WebVTT text (webvtt-py), placed at the top of the frame; and the style rules checked.

Timestamps come from integer milliseconds, formatted once (never from float seconds, which is
how ``59.9996`` becomes ``00:00:60.000``).
"""

from __future__ import annotations

from collections.abc import Iterable

import webvtt

from sound_captions.caption.postprocess import Cue
from sound_captions.caption.vocabulary import MAX_LINE_CHARS, MAX_LINES, check_caption_text

TOP_SETTINGS = "line:0 position:50% align:center"
MIN_CUE_MS = 1000
MAX_CUE_MS = 7000


def format_timestamp(ms: int) -> str:
    """Integer milliseconds → ``HH:MM:SS.mmm``."""
    if ms < 0:
        raise ValueError("negative timestamp")
    hours, rest = divmod(int(ms), 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}"


def wrap_caption(text: str) -> list[str]:
    """Break a caption into at most two lines of at most 42 characters (at spaces)."""
    if len(text) <= MAX_LINE_CHARS:
        return [text]
    words, lines, line = text.split(" "), [], ""
    for word in words:
        candidate = f"{line} {word}".strip()
        if len(candidate) > MAX_LINE_CHARS and line:
            lines.append(line)
            line = word
        else:
            line = candidate
    lines.append(line)
    if len(lines) > MAX_LINES or any(len(x) > MAX_LINE_CHARS for x in lines):
        raise ValueError(f"caption {text!r} does not fit {MAX_LINES} lines of {MAX_LINE_CHARS} characters")
    return lines


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
    doc = webvtt.from_string(vtt_text, strict=True) if hasattr(webvtt, "from_string") else webvtt.WebVTT.from_string(vtt_text)
    for cue in doc.captions:
        where = f"cue {cue.identifier or ''} {cue.start}-{cue.end}"
        duration = cue.end_time.in_milliseconds() - cue.start_time.in_milliseconds() if hasattr(cue, "end_time") else None
        if duration is None:
            duration = int(round((cue.end_in_seconds - cue.start_in_seconds) * 1000))
        if duration < min_ms:
            problems.append(f"{where}: shorter than {min_ms} ms")
        if duration > max_ms:
            problems.append(f"{where}: longer than {max_ms} ms")
        if len(cue.lines) > MAX_LINES or any(len(line) > MAX_LINE_CHARS for line in cue.lines):
            problems.append(f"{where}: more than {MAX_LINES} lines of {MAX_LINE_CHARS} characters")
        try:
            check_caption_text(" ".join(cue.lines))
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
        line_setting = str(cue.settings) if cue.settings is not None else ""
        if "line:0" not in line_setting:
            problems.append(f"{where}: not placed at the top (line:0)")
    return problems
