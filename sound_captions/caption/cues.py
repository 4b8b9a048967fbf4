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


_VTT_TIME = re.compile(r"^(?:(\d+):)?([0-5]\d):([0-5]\d)\.(\d{3})$")
_SRT_TIME = re.compile(r"^(\d+):([0-5]\d):([0-5]\d)[,.](\d{3})$")


def parse_timestamp_ms(text: str, *, srt: bool = False) -> Milliseconds:
    """``"01:02:03.456"`` or ``"02:03.456"`` (SRT: ``"01:02:03,456"``) → integer milliseconds."""
    match = (_SRT_TIME if srt else _VTT_TIME).match(text.strip())
    if match is None:
        raise CueFileError(f"not a{'n SRT' if srt else ' WebVTT'} timestamp: {text!r}")
    hours, minutes, seconds, millis = match.groups()
    return ((int(hours or 0) * 60 + int(minutes)) * 60 + int(seconds)) * 1000 + int(millis)


def read_cues(text: str, *, srt: bool = False) -> list[Cue]:
    """The cues of a WebVTT text (header, NOTE/STYLE/REGION blocks skipped) or, with ``srt``,
    of an SRT text, in file order. Raises :class:`CueFileError` for what is neither."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    blocks = re.split(r"\n[ \t]*\n+", text.strip("\n"))
    if not srt:
        if not re.match(r"WEBVTT(?:[ \t\n]|$)", text):
            raise CueFileError("not a WebVTT file (no WEBVTT header)")
        blocks = blocks[1:]
    cues: list[Cue] = []
    for block in blocks:
        lines = [line for line in block.split("\n") if line.strip()]
        timing_at = next((i for i, line in enumerate(lines) if "-->" in line), None)
        if timing_at is None or timing_at > 1:
            if srt and lines:
                raise CueFileError(f"an SRT block without a timing line: {lines[0][:60]!r}")
            continue  # NOTE, STYLE or REGION block
        start_text, rest = lines[timing_at].split("-->", 1)
        rest = rest.strip().split(maxsplit=1)
        if not rest:
            raise CueFileError(f"a timing line without an end: {lines[timing_at]!r}")
        start_ms, end_ms = parse_timestamp_ms(start_text, srt=srt), parse_timestamp_ms(rest[0], srt=srt)
        if end_ms < start_ms:
            raise CueFileError(f"a cue that ends before it starts: {lines[timing_at]!r}")
        identifier = lines[0].strip() if timing_at == 1 else None
        settings = rest[1].strip() if len(rest) > 1 and not srt else ""
        cues.append(Cue(start_ms, end_ms, "\n".join(lines[timing_at + 1 :]), identifier=identifier, settings=settings))
    return cues
