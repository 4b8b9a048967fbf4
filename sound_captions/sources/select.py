"""Label selection: all parsed :class:`ClipRequest` s + the classes a user names → the balanced,
seeded subset to download.

- Labels are given by display name or machine id and resolved through the ontology; with
  ``include_descendants`` a chosen class also matches every class below it in the ontology
  (a clip labelled "Bark" counts for a chosen "Dog"); the clip's ``selected_labels`` then name
  the chosen class (roll-up), while ``labels`` keeps every original label.
- Balance: labels are filled round-robin from the rarest to the commonest, one clip per turn,
  until each has ``per_label_cap`` clips or runs out. A multi-label clip counts for every chosen
  label it carries, so a common label can pass its cap through co-occurrence with rarer ones.
- Negatives: clips with none of the chosen labels, kept as explicit negatives
  (``negative=True``, ``selected_labels=()``) so that they make ``negatives_share`` of the
  result.
- Deterministic: the result depends only on the set of requests, the arguments and ``seed``
  (candidates are ordered by clip id before the seeded shuffle; the global random state is left
  alone).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Protocol

from sound_captions.sources.requests import ClipRequest


class LabelOntology(Protocol):
    """What selection needs from :class:`sound_captions.ontology.Ontology`."""

    def resolve(self, name_or_mid: str) -> str: ...

    def descendants(self, mid: str, include_self: bool = True) -> set[str]: ...


def resolve_labels(
    ontology: LabelOntology, labels: Iterable[str], *, include_descendants: bool = False
) -> dict[str, frozenset[str]]:
    """Chosen label names/mids → {chosen mid: mids that count for it}, in the given order.

    Raises:
        ValueError: no labels given.
        UnknownLabelError (from the ontology): a name or mid the ontology does not know.
    """
    chosen: dict[str, frozenset[str]] = {}
    for name in labels:
        mid = ontology.resolve(name.strip())
        if mid in chosen:
            continue
        chosen[mid] = frozenset(
            ontology.descendants(mid, include_self=True) if include_descendants else {mid}
        )
    if not chosen:
        raise ValueError("no labels chosen")
    return chosen


def select_clips(
    requests: Sequence[ClipRequest],
    ontology: LabelOntology,
    labels: Iterable[str],
    *,
    include_descendants: bool = False,
    per_label_cap: int | None = None,
    negatives_share: float = 0.0,
    seed: int = 0,
) -> list[ClipRequest]:
    """Pick the clips to download for the chosen *labels*.

    Args:
        requests: parsed requests (duplicates by ``clip_id`` are dropped, first kept).
        ontology: resolves names/mids and gives descendants (:class:`LabelOntology`).
        labels: display names (``"Dog"``) or mids (``"/m/0bt9lr"``).
        include_descendants: a chosen class also matches the classes below it.
        per_label_cap: at most this many clips per chosen label (co-occurrence aside); None
            keeps every clip that carries a chosen label.
        negatives_share: fraction in [0, 1) of the result made of clips with none of the
            chosen labels (fewer if not enough exist).
        seed: seed of the sampling.

    Returns:
        The selected requests, shuffled with *seed*, each with ``selected_labels`` (chosen mids
        present, in the order the labels were given) and ``negative`` set.
    """
    if per_label_cap is not None and per_label_cap < 0:
        raise ValueError(f"per_label_cap must be >= 0, got {per_label_cap}")
    if not 0.0 <= negatives_share < 1.0:
        raise ValueError(f"negatives_share must be in [0, 1), got {negatives_share}")
    chosen = resolve_labels(ontology, labels, include_descendants=include_descendants)
    rng = random.Random(seed)

    unique: dict[str, ClipRequest] = {}
    for r in requests:
        unique.setdefault(r.clip_id, r)
    ordered = [unique[k] for k in sorted(unique)]

    carried: dict[str, tuple[str, ...]] = {}
    candidates: dict[str, list[str]] = {mid: [] for mid in chosen}
    negatives: list[str] = []
    for r in ordered:
        own = set(r.labels)
        present = tuple(mid for mid, matches in chosen.items() if own & matches)
        carried[r.clip_id] = present
        for mid in present:
            candidates[mid].append(r.clip_id)
        if not present:
            negatives.append(r.clip_id)
    for ids in candidates.values():
        rng.shuffle(ids)

    # rarest first; ties by mid so that the order does not depend on dict order
    order = sorted(chosen, key=lambda mid: (len(candidates[mid]), mid))
    cap = per_label_cap if per_label_cap is not None else max(map(len, candidates.values()))
    counts: Counter[str] = Counter()
    picked: dict[str, None] = {}
    cursor = dict.fromkeys(chosen, 0)
    progress = True
    while progress:
        progress = False
        for mid in order:
            if counts[mid] >= cap:
                continue
            ids = candidates[mid]
            while cursor[mid] < len(ids) and ids[cursor[mid]] in picked:
                cursor[mid] += 1
            if cursor[mid] == len(ids):
                continue
            clip_id = ids[cursor[mid]]
            picked[clip_id] = None
            counts.update(carried[clip_id])
            progress = True

    selected = [unique[c].with_selection(carried[c]) for c in picked]
    if negatives_share > 0 and selected:
        wanted = round(len(selected) * negatives_share / (1.0 - negatives_share))
        rng.shuffle(negatives)
        selected += [unique[c].with_selection((), negative=True) for c in negatives[:wanted]]
    rng.shuffle(selected)
    return selected


def selection_counts(selected: Iterable[ClipRequest]) -> dict[str, int]:
    """Clips per selected label, plus ``"negative"`` for explicit negatives."""
    counts: Counter[str] = Counter()
    for r in selected:
        if r.negative:
            counts["negative"] += 1
        counts.update(r.selected_labels)
    return dict(counts)
