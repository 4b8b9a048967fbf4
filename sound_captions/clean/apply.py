"""Reviewer decisions (``decisions.csv`` from the review page, or ``suspicions.csv`` with a
``--drop-above`` score) → a **new** dataset version: the decided clips dropped or relabelled,
shards rewritten, provenance of every change in its ``dataset.json``. The original is only read.

A relabelled or dropped clip takes its augmented copies with it (same clip id), and a
"together" sequence holding one of its seconds is dropped (its per-second labels came from the
old labels).

Decisions CSV: ``clip_id,decision[,labels][,suspicion]``; ``decision`` is ``keep``, ``drop`` or
``relabel`` (``labels``: ';'-separated display names or mids of the dataset's vocabulary; empty:
the clip becomes a negative); a row without a decision is ignored. A clip with several rows, an
unknown clip, decision or label is an error naming the line: nothing is written.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass

import pyarrow as pa

from sound_captions import storage
from sound_captions.clean.folds import clip_label_sets
from sound_captions.clean.options import SPLITS
from sound_captions.clean.suspicion import DROP, KEEP, RELABEL
from sound_captions.dataset import shards
from sound_captions.dataset.augmentation import TOGETHER_PREFIX, together_members
from sound_captions.dataset.rewrite import rewrite_dataset
from sound_captions.ontology import Ontology, UnknownLabelError


class DecisionsError(ValueError):
    """The decisions file cannot be applied (its line is named)."""


@dataclass(frozen=True)
class Decision:
    clip_id: str
    decision: str
    labels: tuple[str, ...]  # mids, for relabel
    suspicion: float | None
    line: int


def _resolve_label(text: str, vocabulary: dict[str, str], where: str) -> str:
    """A display name or mid (the ontology's spelling rules) → a mid of the dataset's vocabulary."""
    try:
        mid = Ontology.load().resolve(text)
    except UnknownLabelError:
        mid = None
    if mid not in vocabulary:
        raise DecisionsError(f"{where}: {text!r} is not a label of the dataset (one of: {', '.join(sorted(vocabulary.values()))})")
    return mid


def read_decisions(text: str, vocabulary: dict[str, str], clip_ids: set[str], *, name: str = "decisions", drop_above: float | None = None) -> list[Decision]:
    """Parse a decisions (or suspicions) CSV; with ``drop_above``, a row without a decision whose
    ``suspicion`` is at least that becomes ``drop``."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    fields = set(reader.fieldnames or ())
    if "clip_id" not in fields or not ({"decision", "suspicion"} & fields):
        raise DecisionsError(f"{name}: needs a clip_id column and a decision column (or suspicion, with --drop-above)")
    if drop_above is not None and "suspicion" not in fields:
        raise DecisionsError(f"{name}: --drop-above needs a suspicion column (suspicions.csv of the review has one)")
    if drop_above is None and "decision" not in fields:
        raise DecisionsError(f"{name}: no decision column (a review's suspicions.csv is applied with --drop-above SCORE)")
    out, seen = [], {}
    for line, row in enumerate(reader, start=2):
        where = f"{name} line {line}"
        clip_id = (row.get("clip_id") or "").strip()
        decision = (row.get("decision") or "").strip().lower()
        score_text = (row.get("suspicion") or "").strip()
        try:
            suspicion = float(score_text) if score_text else None
        except ValueError:
            raise DecisionsError(f"{where}: suspicion {score_text!r} is not a number") from None
        if not decision and drop_above is not None and suspicion is not None and suspicion >= drop_above:
            decision = DROP
        if not decision:
            continue
        if decision not in (KEEP, DROP, RELABEL):
            raise DecisionsError(f"{where}: decision {decision!r} is not keep, drop or relabel")
        if clip_id not in clip_ids:
            raise DecisionsError(f"{where}: clip {clip_id!r} is not in the dataset")
        if clip_id in seen:
            raise DecisionsError(f"{where}: clip {clip_id!r} was already decided on line {seen[clip_id]}")
        seen[clip_id] = line
        labels = ()
        if decision == RELABEL and "labels" not in fields:
            raise DecisionsError(f"{where}: relabel needs a labels column (';'-separated; empty: the clip becomes a negative)")
        if decision == RELABEL:
            labels = tuple(sorted({_resolve_label(t.strip(), vocabulary, where) for t in (row.get("labels") or "").split(";") if t.strip()}))
        out.append(Decision(clip_id, decision, labels, suspicion, line))
    return out


def decisions_transform(decisions: list[Decision], labels_of: dict[str, list[str]]):
    """Shard rows → the cleaned rows. A relabelled clip's seconds lose the labels the decision
    removed and gain the ones it added; seconds of per-second labels keep the rest as they were."""
    drop = {d.clip_id for d in decisions if d.decision == DROP}
    relabel = {
        d.clip_id: (set(labels_of[d.clip_id]) - set(d.labels), sorted(set(d.labels) - set(labels_of[d.clip_id])))
        for d in decisions if d.decision == RELABEL and set(d.labels) != set(labels_of[d.clip_id])
    }  # fmt: skip (a relabel to the labels it has is a keep)
    changed = drop | set(relabel)

    def transform(table: pa.Table) -> pa.Table:
        ids = table.column("clip_id").to_pylist()
        sources = table.column("source").to_pylist()
        keep = [
            c not in drop and not (c.startswith(TOGETHER_PREFIX) and together_members(s) & changed)
            for c, s in zip(ids, sources, strict=True)
        ]
        table = table.filter(pa.array(keep))
        if relabel:
            labels = [
                sorted({*(m for m in old or () if m not in relabel[c][0]), *relabel[c][1]}) if c in relabel else old
                for c, old in zip(table.column("clip_id").to_pylist(), table.column("labels").to_pylist(), strict=True)
            ]
            table = table.set_column(table.schema.get_field_index("labels"), "labels", pa.array(labels, pa.list_(pa.string())))
        return table

    return transform


def apply_decisions(data_uri: str, decisions_uri: str, out: str, *, drop_above: float | None = None) -> shards.DatasetInfo:
    """Write the cleaned version of ``data_uri`` to ``out`` and return its ``dataset.json``."""
    info = shards.load_dataset_info(data_uri)
    try:
        text = storage.read_text(decisions_uri)
    except UnicodeDecodeError as exc:
        raise DecisionsError(f"{decisions_uri}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    labels_of = {c: list(v) for c, v in clip_label_sets(data_uri, SPLITS).items()}
    decisions = read_decisions(text, dict(info.vocabulary), set(labels_of), name=decisions_uri, drop_above=drop_above)
    record = {
        "cleaned_with": {"decisions": decisions_uri, "sha256": hashlib.sha256(text.encode()).hexdigest(), "drop_above": drop_above},
        "dropped": [{"clip_id": d.clip_id, "labels": labels_of[d.clip_id], "suspicion": d.suspicion} for d in decisions if d.decision == DROP],
        "relabelled": [
            {"clip_id": d.clip_id, "from": labels_of[d.clip_id], "to": list(d.labels), "suspicion": d.suspicion}
            for d in decisions if d.decision == RELABEL and set(d.labels) != set(labels_of[d.clip_id])
        ],
        "kept": sum(d.decision == KEEP for d in decisions),
    }  # fmt: skip
    return rewrite_dataset(data_uri, out, decisions_transform(decisions, labels_of), provenance=record)
