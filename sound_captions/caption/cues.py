"""One cue type and one subtitle reader for every part that handles cues: post-processing and
WebVTT writing (sound cues it makes), the speech merge (speech cues it reads), the preview and
the demo's scoring (the ``.vtt`` a viewer reads).

Times are integer milliseconds from start to end (never float seconds, which is how
``59.9996`` becomes ``00:00:60.000``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

Milliseconds = int


class CueFileError(ValueError):
    """A subtitle text that is not WebVTT (or SRT, where SRT is read); the message says why."""


@dataclass(frozen=True)
class Cue:
    """One cue: ``[start_ms, end_ms)`` and its text (lines joined with ``\\n``).

    A sound cue made by post-processing also has its ``label`` (AudioSet mid) and
    ``confidence``; a cue read from a file has its ``identifier`` and WebVTT ``settings``
    (placement). Those two say how a cue is shown, not what it says, so equality ignores them.
    """

    start_ms: Milliseconds
    end_ms: Milliseconds
    text: str
    label: str = ""
    confidence: float = 1.0
    identifier: str | None = field(default=None, compare=False)
    settings: str = field(default="", compare=False)

    @property
    def duration_ms(self) -> Milliseconds:
        return self.end_ms - self.start_ms

    @property
    def lines(self) -> tuple[str, ...]:
        return tuple(self.text.split("\n"))


_VTT_TIME = re.compile(r"^(?:(\d+):)?(\d{1,2}):(\d{1,2})\.(\d{1,3})$")
_SRT_TIME = re.compile(r"^(\d{1,2}):(\d{1,2}):(\d{1,2})[,.](\d{1,3})$")
_BLOCKS = ("NOTE", "STYLE", "REGION")


def parse_timestamp_ms(text: str, *, srt: bool = False) -> Milliseconds:
    """``"01:02:03.456"`` or ``"02:03.456"`` (SRT: ``"01:02:03,456"``) → integer milliseconds;
    fields may have fewer digits (``0:01.5`` is 1.5 s), as players accept them."""
    match = (_SRT_TIME if srt else _VTT_TIME).match(text.strip())
    if match is None:
        raise CueFileError(f"not a{'n SRT' if srt else ' WebVTT'} timestamp: {text!r}")
    hours, minutes, seconds, millis = match.groups()
    if int(minutes) > 59 or int(seconds) > 59:
        raise CueFileError(f"not a{'n SRT' if srt else ' WebVTT'} timestamp: {text!r}")
    return ((int(hours or 0) * 60 + int(minutes)) * 60 + int(seconds)) * 1000 + int(millis.ljust(3, "0"))


def _timing(line: str, srt: bool) -> tuple[int, int, str]:
    start_text, rest = line.split("-->", 1)
    rest = rest.strip().split(maxsplit=1)
    if not rest:
        raise CueFileError(f"a timing line without an end: {line!r}")
    start_ms, end_ms = parse_timestamp_ms(start_text, srt=srt), parse_timestamp_ms(rest[0], srt=srt)
    if end_ms < start_ms:
        raise CueFileError(f"a cue that ends before it starts: {line!r}")
    return start_ms, end_ms, rest[1].strip() if len(rest) > 1 and not srt else ""


def read_cues(text: str, *, srt: bool = False, strict: bool = True) -> list[Cue]:
    """The cues of a WebVTT text (header, NOTE/STYLE/REGION blocks skipped) or, with ``srt``,
    of an SRT text, in file order. A new cue starts at each timing line, blank line or not (its
    identifier is the line just before, where that line opens a block or, in SRT, is a number).
    In SRT a cue's text runs to the next timing line (a blank line inside it is dropped), as
    players read them. ``strict`` (the default, for our own files): a bad timing line refuses
    the file with :class:`CueFileError`; otherwise (a person's subtitle file) that cue is
    skipped."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    if not srt:
        if not re.match(r"WEBVTT(?:[ \t]|$)", lines[0]):
            raise CueFileError("not a WebVTT file (no WEBVTT header)")
        lines[0] = ""
    cues: list[Cue] = []
    current: dict | None = None  # the cue being read
    skipping = not srt  # the header block (and NOTE/STYLE/REGION blocks)
    block_start = True
    for index, line in enumerate(lines):
        if line.strip() == "" and line != "":
            continue  # a line of spaces: not the end of a cue
        if not line:
            if current is not None and not srt:
                cues.append(_cue(current))
                current = None
            skipping, block_start = False, True
            continue
        if "-->" in line:
            try:
                start_ms, end_ms, settings = _timing(line, srt)
            except CueFileError:
                if strict:
                    raise
                if current is not None:
                    cues.append(_cue(current))
                current, skipping, block_start = None, True, False
                continue
            previous = lines[index - 1].strip() if index else ""
            identifier = None
            if current is not None:
                if previous and current["text"] and current["text"][-1] == previous and (srt and previous.isdigit()):
                    current["text"].pop()  # the next SRT cue's number, written without a blank line
                    identifier = previous
                cues.append(_cue(current))
            elif previous and (index < 2 or not lines[index - 2].strip() or (srt and previous.isdigit())):
                identifier = previous
            current = {"start": start_ms, "end": end_ms, "settings": settings, "id": identifier, "text": []}
            skipping, block_start = False, False
            continue
        if block_start and not srt and line.split(maxsplit=1)[0] in _BLOCKS:
            skipping = True
        block_start = False
        if skipping:
            continue
        if current is not None:  # (in SRT, text after a blank line continues the cue before)
            current["text"].append(line.strip())
    if current is not None:
        cues.append(_cue(current))
    return cues


def _cue(state: dict) -> Cue:
    return Cue(state["start"], state["end"], "\n".join(state["text"]), identifier=state["id"], settings=state["settings"])
