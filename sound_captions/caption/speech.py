"""Speech subtitles + sound cues → one combined SDH track (``<rel>.sdh.vtt``).

Speech cues are kept exactly as they are (text, timing, identifiers, settings; normally at the
bottom). Sound cues are added at the top (``line:0``), so the two never share a screen region.
Where a speech cue sits at the top itself, the sound cues that overlap it in time move to the
bottom for that time. A sound cue is left out where an overlapping speech cue already describes
that sound in brackets (``[dog barking]``): the viewer must not read it twice.
"""

from __future__ import annotations

import re

import webvtt

from sound_captions import storage
from sound_captions.caption.cues import Cue, read_cues
from sound_captions.caption.style import (
    BOTTOM_SETTINGS,
    TOP_SETTINGS,
    description_key,
    placed_at_top,
    wrap_caption,
)
from sound_captions.caption.vtt import format_timestamp

SPEECH_SUFFIXES = (".vtt", ".srt")
_BRACKETED = re.compile(r"\[([^\[\]]+)\]")


def descriptions(cue: Cue) -> set[str]:
    """The bracketed sound descriptions of a speech cue, compared as ``style.description_key``
    compares them (``"[Dog barks]"`` → ``"dog barks"``)."""
    return {description_key(m) for m in _BRACKETED.findall(" ".join(cue.lines))}


def find_speech_track(speech_root: str, rel: str) -> str | None:
    """``<speech_root>/<rel>.vtt`` or ``.srt``, whichever exists first; ``None`` if neither."""
    for suffix in SPEECH_SUFFIXES:
        uri = storage.join(speech_root, rel + suffix)
        if storage.exists(uri):
            return uri
    return None


def _ms(timestamp) -> int:
    return int(timestamp.in_milliseconds()) if hasattr(timestamp, "in_milliseconds") else int(round(float(timestamp) * 1000))


def read_speech_cues(uri: str) -> list[Cue]:
    """A WebVTT or SRT file (local or s3://) → its cues (``CueFileError`` for a broken one)."""
    return read_cues(storage.read_text(uri), srt=uri.lower().endswith(".srt"), strict=False)


def merge_tracks(speech: list[Cue], sound: list[Cue]) -> str:
    """The WebVTT text of one SDH track: every speech cue unchanged plus the sound cues that add
    something, placed where the speech is not."""
    doc = webvtt.WebVTT()
    entries: list[tuple[int, int, int, webvtt.Caption]] = []
    for index, cue in enumerate(speech):
        caption = webvtt.Caption(
            start=format_timestamp(cue.start_ms), end=format_timestamp(cue.end_ms), text=list(cue.lines),
            identifier=cue.identifier, settings=cue.settings or None,
        )
        entries.append((cue.start_ms, 0, index, caption))
    for index, cue in enumerate(sound):
        overlapping = [s for s in speech if s.start_ms < cue.end_ms and cue.start_ms < s.end_ms]
        if any(description_key(cue.text) in descriptions(s) for s in overlapping):
            continue  # the speech track already says it
        settings = BOTTOM_SETTINGS if any(placed_at_top(s.settings) for s in overlapping) else TOP_SETTINGS
        caption = webvtt.Caption(
            start=format_timestamp(cue.start_ms), end=format_timestamp(cue.end_ms), text=wrap_caption(cue.text),
            identifier=f"sound-{index + 1}", settings=settings,
        )
        entries.append((cue.start_ms, 1, index, caption))
    doc.captions.extend(caption for *_, caption in sorted(entries, key=lambda e: e[:3]))
    text = doc.content
    return text if text.endswith("\n") else text + "\n"
