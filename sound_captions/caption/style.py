"""The caption style: every rule about how a sound caption looks, in one place.

Used by the vocabulary (which texts are valid), post-processing (cue lengths, "continues"),
WebVTT writing (line breaks, placement), the speech merge (placement beside speech, the same
sound said twice) and the preview (a caption's lane). The rules, after the DCMP and BBC
subtitle guidelines for sound descriptions:

- a caption is lowercase words in square brackets, ``[dog barking]``, with no line break, no
  brackets inside and no WebVTT cue syntax (``-->``);
- at most 2 lines of at most 42 characters (broken at spaces);
- a cue lasts 1 to 7 seconds; a longer sound is split, and the followers read
  ``[dog barking continues]``;
- sound cues sit at the top of the frame (``line:0``), speech at the bottom; while a speech cue
  is itself at the top, overlapping sound cues move just above the bottom row.
"""

from __future__ import annotations

import re

MAX_LINE_CHARS = 42
MAX_LINES = 2
MIN_CUE_MS = 1000
MAX_CUE_MS = 7000
TOP_SETTINGS = "line:0 position:50% align:center"
BOTTOM_SETTINGS = "line:-2 position:50% align:center"  # above the bottom row, for a top speech cue
CONTINUES = "continues"

_CAPTION = re.compile(r"^\[[^\[\]A-Z\r\n]+\]$")
_CONTINUES_RE = re.compile(r"\s*(?:…|\.\.\.)?\s*continues\s*$", re.IGNORECASE)


class CaptionTextError(ValueError):
    """A caption text that breaks the caption style rules."""


def is_caption_text(text: str) -> bool:
    """True when ``text`` is a valid sound caption (see :func:`check_caption_text`)."""
    return bool(_CAPTION.match(text)) and "-->" not in text and len(text) <= MAX_LINE_CHARS * MAX_LINES


def check_caption_text(text: str) -> str:
    """Validate one sound caption: ``[lowercase words]`` on no more than 2 lines of 42."""
    if not _CAPTION.match(text) or "-->" in text:
        raise CaptionTextError(f"caption {text!r} must be lowercase words in square brackets, e.g. [dog barking]")
    if len(text) > MAX_LINE_CHARS * MAX_LINES:
        raise CaptionTextError(f"caption {text!r} is longer than {MAX_LINES} lines of {MAX_LINE_CHARS} characters")
    return text


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
        raise CaptionTextError(f"caption {text!r} does not fit {MAX_LINES} lines of {MAX_LINE_CHARS} characters")
    return lines


def continues_text(text: str) -> str:
    """``[dog barking]`` → ``[dog barking continues]`` (the caption of a follower cue)."""
    return text[:-1].rstrip() + f" {CONTINUES}]"


def base_caption(text: str) -> str:
    """The sound a caption line names, whatever its continuation: ``"[dog barking … continues]"``
    → ``"[dog barking]"`` (a text without brackets keeps having none)."""
    inner = text.strip()
    bracketed = inner.startswith("[") and inner.endswith("]")
    if bracketed:
        inner = inner[1:-1]
    inner = _CONTINUES_RE.sub("", inner).strip() or inner
    return f"[{inner}]" if bracketed else inner


def description_key(text: str) -> str:
    """A sound description compared across tracks: brackets, case, spacing and "continues"
    ignored (``"[Dog  barks continues]"`` → ``"dog barks"``)."""
    return " ".join(base_caption(text.strip()).strip("[] ").lower().split())


_TOP_LINE = re.compile(r"\bline:(\d+(?:\.\d+)?)(%?)")


def placed_at_top(settings: str) -> bool:
    """True when WebVTT cue settings place the cue in the upper part of the frame."""
    match = _TOP_LINE.search(settings or "")
    if not match:
        return False
    value, percent = float(match.group(1)), match.group(2)
    return value < 50 if percent else value <= 3
