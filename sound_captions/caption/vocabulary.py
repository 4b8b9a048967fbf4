"""AudioSet class → SDH caption text (``"Baby cry, infant cry"`` → ``[baby crying]``).

The packaged ``data/caption_vocabulary.csv`` (``mid,display_name,caption``) is a curated list of
classes worth captioning. Speech classes (the transcript covers speech) and acoustic scene
classes ("Inside, small room": they add nothing) are excluded, also from a user's file unless
``allow_excluded`` is given. Users replace or extend the list with their own CSV of the same
columns (``display_name`` may stand in for ``mid``).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from importlib import resources

from sound_captions import storage
from sound_captions.ontology import Ontology

MAX_LINE_CHARS = 42
MAX_LINES = 2
EXCLUDED_ROOTS = ("Speech", "Acoustic environment")
_CAPTION = re.compile(r"^\[[^\[\]A-Z]+\]$")


class CaptionTextError(ValueError):
    """A caption text that breaks the caption style rules."""


def excluded_mids(ontology: Ontology) -> frozenset[str]:
    """Speech and acoustic-scene classes with everything below them."""
    out: set[str] = set()
    for root in EXCLUDED_ROOTS:
        out |= ontology.descendants(root)
    return frozenset(out)


def check_caption_text(text: str) -> str:
    """Validate the style of one sound caption: ``[lowercase words]``, fits 2 lines of 42."""
    if not _CAPTION.match(text):
        raise CaptionTextError(f"caption {text!r} must be lowercase words in square brackets, e.g. [dog barking]")
    if len(text) > MAX_LINE_CHARS * MAX_LINES:
        raise CaptionTextError(f"caption {text!r} is longer than {MAX_LINES} lines of {MAX_LINE_CHARS} characters")
    return text


@dataclass(frozen=True)
class CaptionVocabulary:
    captions: dict[str, str]  # mid → caption text
    fallback_to_name: bool = False
    excluded: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def load(cls, uri: str | None = None, *, allow_excluded: bool = False, fallback_to_name: bool = False) -> CaptionVocabulary:
        """The packaged vocabulary, or the CSV at ``uri`` (local or s3://)."""
        ontology = Ontology.load()
        if uri is None:
            text = (resources.files("sound_captions") / "data" / "caption_vocabulary.csv").read_text(encoding="utf-8")
        else:
            text = storage.read_text(uri)
        excluded = excluded_mids(ontology)
        captions: dict[str, str] = {}
        for line_no, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
            key = (row.get("mid") or row.get("display_name") or "").strip()
            caption = (row.get("caption") or "").strip()
            if not key or not caption:
                raise CaptionTextError(f"{uri or 'caption_vocabulary.csv'}:{line_no}: needs a mid (or display_name) and a caption")
            mid = ontology.resolve(key)
            if mid in excluded and not allow_excluded:
                continue
            captions[mid] = check_caption_text(caption)
        return cls(captions=captions, fallback_to_name=fallback_to_name, excluded=frozenset() if allow_excluded else excluded)

    def caption(self, mid: str) -> str | None:
        """The caption text for ``mid``; ``None`` when the class is not captioned."""
        if mid in self.captions:
            return self.captions[mid]
        if self.fallback_to_name and mid not in self.excluded:
            name = Ontology.load().name(mid)
            text = "[" + re.sub(r"[\[\]]", "", name.split(",")[0]).strip().lower() + "]"
            return text if _CAPTION.match(text) else None
        return None
