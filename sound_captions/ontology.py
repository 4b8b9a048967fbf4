"""AudioSet ontology: display names ↔ machine ids (mids), and the class hierarchy.

The packaged copies of ``ontology.json`` (632 classes) and ``class_labels_indices.csv`` (the 527
labelled ones) come from Google's AudioSet release; see ``data/ATTRIBUTION.md``.
"""

from __future__ import annotations

import csv
import functools
import io
import json
from dataclasses import dataclass, field
from importlib import resources


class UnknownLabelError(KeyError, ValueError):
    """A label that is neither an AudioSet mid nor a display name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class AudioSetClass:
    mid: str
    name: str
    description: str
    child_ids: tuple[str, ...]
    restrictions: tuple[str, ...]


def _normalise(name: str) -> str:
    return " ".join(name.strip().lower().split())


@dataclass(frozen=True)
class Ontology:
    classes: dict[str, AudioSetClass]
    labelled_mids: tuple[str, ...]
    _by_name: dict[str, str] = field(repr=False, default_factory=dict)

    @staticmethod
    @functools.cache
    def load() -> Ontology:
        """The packaged AudioSet ontology (parsed once per process)."""
        pkg = resources.files("sound_captions") / "data"
        raw = json.loads((pkg / "ontology.json").read_text(encoding="utf-8"))
        classes = {
            c["id"]: AudioSetClass(
                mid=c["id"],
                name=c["name"],
                description=c.get("description", ""),
                child_ids=tuple(c.get("child_ids", ())),
                restrictions=tuple(c.get("restrictions", ())),
            )
            for c in raw
        }
        rows = csv.DictReader(io.StringIO((pkg / "class_labels_indices.csv").read_text(encoding="utf-8")))
        labelled = tuple(r["mid"] for r in sorted(rows, key=lambda r: int(r["index"])))
        by_name = {_normalise(c.name): c.mid for c in classes.values()}
        return Ontology(classes=classes, labelled_mids=labelled, _by_name=by_name)

    def resolve(self, label: str) -> str:
        """A mid for a mid or a display name (case- and space-insensitive)."""
        text = label.strip()
        if text in self.classes:
            return text
        mid = self._by_name.get(_normalise(text))
        if mid is None:
            raise UnknownLabelError(f"unknown AudioSet label {label!r} (give a display name such as 'Dog' or a mid such as '/m/0bt9lr')")
        return mid

    def name(self, mid: str) -> str:
        try:
            return self.classes[mid].name
        except KeyError:
            raise UnknownLabelError(f"unknown AudioSet mid {mid!r}") from None

    def children(self, mid: str) -> tuple[str, ...]:
        return self.classes[self.resolve(mid)].child_ids

    def descendants(self, label: str, include_self: bool = True) -> set[str]:
        """All classes below ``label`` in the hierarchy (the ontology is a DAG, not a tree)."""
        root = self.resolve(label)
        seen: set[str] = set()
        stack = [root]
        while stack:
            mid = stack.pop()
            if mid in seen:
                continue
            seen.add(mid)
            stack.extend(self.classes[mid].child_ids)
        if not include_self:
            seen.discard(root)
        return seen

    def is_labelled(self, mid: str) -> bool:
        return mid in self._labelled_set

    @functools.cached_property
    def _labelled_set(self) -> frozenset[str]:
        return frozenset(self.labelled_mids)
