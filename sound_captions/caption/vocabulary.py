"""AudioSet class → SDH caption text (``"Baby cry, infant cry"`` → ``[baby crying]``).

The packaged ``data/caption_vocabulary.csv`` (``mid,display_name,caption``) is a curated list of
classes worth captioning. Speech classes (the transcript covers speech) and acoustic scene
classes ("Inside, small room": they add nothing) are excluded, also from a user's file unless
``allow_excluded`` is given. Users replace or extend the list with their own CSV of the same
columns (``display_name`` may stand in for ``mid``); a caption cell of ``-`` excludes that class
on purpose.

No trained class is dropped silently: :meth:`CaptionVocabulary.resolve` gives every label a text
(the vocabulary's, else one derived from its display name, ``"Water"`` → ``[water]``) unless it is
excluded, and says which labels got a derived text and which can never be captioned (and why).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from importlib import resources

from sound_captions import storage
from sound_captions.caption.style import (
    MAX_LINE_CHARS,
    CaptionTextError,
    check_caption_text,
    is_caption_text,
)
from sound_captions.ontology import Ontology

EXCLUDED_ROOTS = ("Speech", "Acoustic environment")
EXCLUDE_MARK = "-"  # a caption cell of "-" in a vocabulary CSV: never caption this class


def excluded_mids(ontology: Ontology) -> frozenset[str]:
    """Speech and acoustic-scene classes with everything below them."""
    out: set[str] = set()
    for root in EXCLUDED_ROOTS:
        out |= ontology.descendants(root)
    return frozenset(out)


def derive_caption_text(display_name: str) -> str | None:
    """A style-checked caption from a class's display name, or ``None`` when none fits.

    The first comma-separated alternative that gives a valid caption wins (``"Baby cry, infant
    cry"`` → ``[baby cry]``); parenthesised qualifiers are dropped (``"Police car (siren)"`` →
    ``[police car]``); the text must fit one line of 42 characters and must not end in a
    past-tense verb (``[door slammed]``): captions describe the sound as it is heard.
    """
    for alternative in display_name.split(","):
        words = re.sub(r"\([^)]*\)", " ", alternative).lower()
        words = " ".join(re.sub(r"[^a-z0-9' -]", " ", words).split())
        if not words or words.split()[-1].endswith("ed"):
            continue
        text = f"[{words}]"
        if len(text) <= MAX_LINE_CHARS and is_caption_text(text):
            return text
    return None


@dataclass(frozen=True)
class CaptionTexts:
    """Caption texts resolved for a model's labels.

    Attributes:
        texts: mid → caption text of every label that is captioned.
        derived: the subset of ``texts`` derived from display names (no vocabulary text).
        never: mid → why it can never be captioned (``excluded`` on purpose, or ``no text``).
    """

    texts: dict[str, str]
    derived: dict[str, str] = field(default_factory=dict)
    never: dict[str, str] = field(default_factory=dict)

    def warnings(self, names: dict[str, str] | None = None) -> list[str]:
        """One line per label with a derived text and per label that no text could be made for
        (labels excluded on purpose are not warnings; the run report lists them)."""
        names = names or {}
        lines = [
            f"class {names.get(m, m)!r} ({m}) has no caption text in the vocabulary; captioned as {t}"
            for m, t in sorted(self.derived.items())
        ]
        lines += [
            f"class {names.get(m, m)!r} ({m}) can never be captioned: {why}"
            for m, why in sorted(self.never.items())
            if why != "excluded"
        ]
        return lines




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
        chosen: set[str] = set()  # excluded by the file itself ("-")
        for line_no, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
            key = (row.get("mid") or row.get("display_name") or "").strip()
            caption = (row.get("caption") or "").strip()
            if not key or not caption:
                raise CaptionTextError(
                    f"{uri or 'caption_vocabulary.csv'}:{line_no}: needs a mid (or display_name) and a caption "
                    f"(or {EXCLUDE_MARK!r} to exclude the class)"
                )
            mid = ontology.resolve(key)
            if caption == EXCLUDE_MARK:
                chosen.add(mid)
                continue
            if mid in excluded and not allow_excluded:
                continue
            captions[mid] = check_caption_text(caption)
        for mid in chosen:
            captions.pop(mid, None)
        base = frozenset() if allow_excluded else excluded
        return cls(captions=captions, fallback_to_name=fallback_to_name, excluded=base | chosen)

    def caption(self, mid: str) -> str | None:
        """The caption text for ``mid``; ``None`` when the class is not captioned."""
        if mid in self.captions:
            return self.captions[mid]
        if self.fallback_to_name and mid not in self.excluded:
            return derive_caption_text(Ontology.load().name(mid))
        return None

    def resolve(
        self,
        labels: list[str],
        names: dict[str, str] | None = None,
        preset: dict[str, str] | None = None,
        also_excluded: frozenset[str] | set[str] = frozenset(),
    ) -> CaptionTexts:
        """Caption texts for ``labels``: ``preset`` (e.g. a bundle's texts) first, then this
        vocabulary's, else one derived from the display name (``names``, or the ontology's) —
        unless the label is excluded (by this vocabulary or in ``also_excluded``)."""
        ontology = Ontology.load()
        names = names or {}
        texts: dict[str, str] = {}
        derived: dict[str, str] = {}
        never: dict[str, str] = {}
        for mid in labels:
            text = (preset or {}).get(mid) or self.captions.get(mid)
            if text:
                texts[mid] = text
                continue
            if mid in self.excluded or mid in also_excluded:
                never[mid] = "excluded"
                continue
            name = names.get(mid) or (ontology.name(mid) if mid in ontology.classes else mid)
            text = derive_caption_text(name)
            if text:
                texts[mid] = derived[mid] = text
            else:
                never[mid] = f"no caption text could be made from its name {name!r}"
        return CaptionTexts(texts=texts, derived=derived, never=never)


def run_caption_texts(
    labels: list[str], names: dict[str, str], bundle_texts: dict[str, str], bundle_training: dict, vocabulary_uri: str | None
) -> CaptionTexts:
    """The caption texts a caption run uses: the ``vocabulary_uri`` CSV's for the model's labels
    when one is given, else the bundle's (classes the bundle's training run recorded as never
    captioned stay so; a label an older bundle has no text for is resolved from the packaged
    vocabulary, derived from its name when needed)."""
    if vocabulary_uri:
        return CaptionVocabulary.load(vocabulary_uri).resolve(labels, names)
    never = set((bundle_training or {}).get("captions_never", {}))
    return CaptionVocabulary.load().resolve(labels, names, preset=bundle_texts, also_excluded=never)
