"""Speech subtitles + sound cues → one combined SDH track (``<rel>.sdh.vtt``).

Speech cues are kept exactly as they are (text, timing, identifiers, settings; normally at the
bottom). Sound cues are added at the top (``line:0``), so the two never share a screen region.
Where a speech cue sits at the top itself, the sound cues that overlap it in time move to the
bottom for that time. A sound cue is left out where an overlapping speech cue already describes
that sound in brackets (``[dog barking]``): the viewer must not read it twice.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import webvtt

from sound_captions import storage
from sound_captions.caption.postprocess import Cue
from sound_captions.caption.vtt import TOP_SETTINGS, format_timestamp, wrap_caption

SPEECH_SUFFIXES = (".vtt", ".srt")
BOTTOM_SETTINGS = "line:-2 position:50% align:center"  # above the bottom row, for a top speech cue
_BRACKETED = re.compile(r"\[([^\[\]]+)\]")
_TOP_LINE = re.compile(r"\bline:(\d+(?:\.\d+)?)(%?)")


@dataclass(frozen=True)
class SpeechCue:
    start_ms: int
    end_ms: int
    lines: tuple[str, ...]
    identifier: str | None
    settings: str

    @property
    def at_top(self) -> bool:
        """True when the cue's settings place it in the upper half of the frame."""
        match = _TOP_LINE.search(self.settings)
        if not match:
            return False
        value, percent = float(match.group(1)), match.group(2)
        return value < 50 if percent else value <= 3

    def descriptions(self) -> set[str]:
        """Bracketed sound descriptions in the cue, normalised (``"[Dog barks]"`` → ``"dog barks"``)."""
        return {_normalise(m) for m in _BRACKETED.findall(" ".join(self.lines))}


def _normalise(text: str) -> str:
    text = text.strip("[] ").lower()
    return re.sub(r"\s+continues$", "", re.sub(r"\s+", " ", text))


def find_speech_track(speech_root: str, rel: str) -> str | None:
    """``<speech_root>/<rel>.vtt`` or ``.srt``, whichever exists first; ``None`` if neither."""
    for suffix in SPEECH_SUFFIXES:
        uri = storage.join(speech_root, rel + suffix)
        if storage.exists(uri):
            return uri
    return None


def _ms(timestamp) -> int:
    return int(timestamp.in_milliseconds()) if hasattr(timestamp, "in_milliseconds") else int(round(float(timestamp) * 1000))


def read_speech_cues(uri: str) -> list[SpeechCue]:
    """A WebVTT or SRT file (local or s3://) → its cues."""
    text = storage.read_text(uri).lstrip("\ufeff")
    doc = webvtt.from_buffer(io.StringIO(text), format="srt" if uri.lower().endswith(".srt") else "vtt")
    return [
        SpeechCue(_ms(c.start_time), _ms(c.end_time), tuple(c.lines), c.identifier, str(c.settings or "").strip())
        for c in doc.captions
    ]


def merge_tracks(speech: list[SpeechCue], sound: list[Cue]) -> str:
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
        if any(_normalise(cue.text) in s.descriptions() for s in overlapping):
            continue  # the speech track already says it
        settings = BOTTOM_SETTINGS if any(s.at_top for s in overlapping) else TOP_SETTINGS
        caption = webvtt.Caption(
            start=format_timestamp(cue.start_ms), end=format_timestamp(cue.end_ms), text=wrap_caption(cue.text),
            identifier=f"sound-{index + 1}", settings=settings,
        )
        entries.append((cue.start_ms, 1, index, caption))
    doc.captions.extend(caption for *_, caption in sorted(entries, key=lambda e: e[:3]))
    text = doc.content
    return text if text.endswith("\n") else text + "\n"
