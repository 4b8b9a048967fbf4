"""Out-of-fold scores → per clip and label: how likely the label is wrong or missing, a suggested
change, and per second: which seconds of a labelled clip the label does not seem to cover.

The scores are cleanlab's per-class label quality (confident learning, Northcutt et al.:
self-confidence of each class's given/not-given label, with the per-class confident thresholds
subtracted from the probabilities so that classes the model is less sure of weigh the same) on
the clips' pooled out-of-fold probabilities. Per clip: ``wrong_score`` = 1 − the lowest quality
among its given labels, ``missing_score`` = 1 − the lowest among the others, and the
**suspicion** the review ranks by is their mean: a label replaced by another one raises both,
a clip the model merely finds hard raises one. Chosen on the real-sound corpus with 10 % flips
(``bench/bench_clean.py``): cleanlab's whole-clip score (aggregated over every class) ranked far
worse there, because the 19 labels a clip does not have dominate it; it is kept as
``label_quality``. The issue flags are cleanlab's ``find_label_issues``. cleanlab is AGPL-3.0,
so it is an optional extra (``pip install 'sound-captions[clean]'``) and not part of the default
install of this Apache-2.0 project.

A clip's probability of a label pools its seconds: the mean of its top third of per-second
scores, so a sound heard in a few seconds of a ten-second clip still counts, while one stray
second does not make it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sound_captions.clean.folds import OutOfFold

#: what --apply accepts as a decision
KEEP, DROP, RELABEL = "keep", "drop", "relabel"
#: a label whose (adjusted) per-class quality is below this is called probably wrong (given) or
#: probably missing (not given) in the suggestion
SUGGEST_BELOW = 0.5
#: probably missing labels listed per clip at most (the most likely first)
MAX_MISSING = 3


class CleanlabMissingError(ImportError):
    """The optional cleanlab extra is not installed."""


def require_cleanlab():
    """cleanlab's multi-label ``filter`` and ``rank`` modules; :class:`CleanlabMissingError`
    where the extra is not installed."""
    try:
        from cleanlab.multilabel_classification import filter as cl_filter
        from cleanlab.multilabel_classification import rank as cl_rank
    except ImportError as exc:
        raise CleanlabMissingError(
            "dataset clean needs cleanlab (AGPL-3.0, kept out of the default install): pip install 'sound-captions[clean]'"
        ) from exc
    return cl_filter, cl_rank


def pool_seconds(scores: np.ndarray) -> np.ndarray:
    """(n_seconds, L) per-second scores of one clip → (L,) its probability of each label: the
    mean of the top ⌈n/3⌉ seconds."""
    k = max(1, int(np.ceil(scores.shape[0] / 3)))
    return np.sort(scores, axis=0)[-k:].mean(axis=0)


@dataclass
class ClipSuspicion:
    """One clip's verdict.

    ``suspicion``: what the review ranks by (0..1, the mean of ``wrong_score`` and
    ``missing_score``); ``label_quality``: cleanlab's whole-clip label quality (low: probably
    wrong); ``issue``: cleanlab's ``find_label_issues`` flags it; ``probability``: the clip's
    pooled out-of-fold probability per label; ``wrong`` / ``missing``: labels given but probably
    absent / not given but probably present (at most three, the most likely first);
    ``suggestion``: keep, drop or relabel, with ``suggested_labels`` (only a clip with a label
    probably wrong gets a change: the most likely missing label replaces it); ``partial``:
    label → the seconds (indices into the clip) it seems
    absent from, for labels the clip as a whole does hold."""

    clip_id: str
    source: str
    start_s: float
    n_seconds: int
    labels: tuple[str, ...]
    suspicion: float
    wrong_score: float
    missing_score: float
    label_quality: float
    issue: bool
    probability: dict[str, float]
    wrong: tuple[str, ...]
    missing: tuple[str, ...]
    suggestion: str
    suggested_labels: tuple[str, ...]
    partial: dict[str, list[int]]
    per_second: np.ndarray  # (n_seconds, L) out-of-fold scores


def class_thresholds(given: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Per class, the midpoint between its mean probability over the clips labelled with it
    (confident learning's per-class threshold) and over the clips not labelled with it: a
    second of a labelled clip below it seems not to hold the label. 0.5 where either side has
    no clip."""
    pos, neg = given.sum(axis=0), (~given).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_pos = (probs * given).sum(axis=0) / pos
        mean_neg = (probs * ~given).sum(axis=0) / neg
    return np.where((pos > 0) & (neg > 0), (mean_pos + mean_neg) / 2, 0.5)


def rank_clips(oof: OutOfFold) -> list[ClipSuspicion]:
    """Every examined clip with its verdict, most suspicious first."""
    cl_filter, cl_rank = require_cleanlab()
    ids = oof.meta.column("clip_id").to_pylist()
    order = np.asarray(ids, dtype=object)
    starts = np.flatnonzero(np.r_[True, order[1:] != order[:-1]])  # the meta is sorted by clip, then time
    bounds = list(zip(starts, [*starts[1:], len(ids)], strict=True))
    index = {m: j for j, m in enumerate(oof.labels)}
    row_labels = oof.meta.column("labels").to_pylist()
    clip_ids = [ids[a] for a, _ in bounds]
    given_lists = [sorted({index[m] for r in range(a, b) for m in (row_labels[r] or ()) if m in index}) for a, b in bounds]
    probs = np.stack([pool_seconds(oof.scores[a:b]) for a, b in bounds]).astype(np.float64)
    given = np.zeros_like(probs, dtype=bool)
    for i, js in enumerate(given_lists):
        given[i, js] = True
    per_class = np.asarray(cl_rank.get_label_quality_scores_per_class(given_lists, probs, adjust_pred_probs=True))
    wrong_score = 1.0 - np.where(given, per_class, 1.0).min(axis=1)
    missing_score = 1.0 - np.where(~given, per_class, 1.0).min(axis=1)
    label_quality = cl_rank.get_label_quality_scores(given_lists, probs)
    issues = _find_issues(cl_filter, given_lists, probs)
    thresholds = class_thresholds(given, probs)
    sources = oof.meta.column("source").to_pylist()
    start_s = oof.meta.column("start_s").to_numpy()
    out = []
    for i, (a, b) in enumerate(bounds):
        wrong = [oof.labels[j] for j in given_lists[i] if per_class[i, j] < SUGGEST_BELOW]
        others = np.where(given[i], np.inf, per_class[i])
        candidates = [j for j in np.argsort(others, kind="stable")[:MAX_MISSING] if others[j] < SUGGEST_BELOW]
        missing = [oof.labels[j] for j in candidates]
        # Only a clip with a label that looks wrong gets a change: the most likely missing label
        # takes its place. Labels only "missing" are listed, never added on their own (on real
        # sound, with fold models of modest accuracy, that would touch nearly every clip).
        kept = [oof.labels[j] for j in given_lists[i] if oof.labels[j] not in wrong]
        new = tuple(sorted({*kept, *missing[:1]})) if wrong else tuple(oof.labels[j] for j in given_lists[i])
        if not wrong:
            suggestion = KEEP
        elif not new:
            suggestion = DROP  # nothing it holds is known: as a negative it could teach "silence"
        else:
            suggestion = RELABEL
        partial = {}
        for j in given_lists[i]:
            if oof.labels[j] in wrong:
                continue
            low = np.flatnonzero(oof.scores[a:b, j] < thresholds[j])
            if 0 < len(low) < b - a:
                partial[oof.labels[j]] = [int(s) for s in low]
        out.append(
            ClipSuspicion(
                clip_id=clip_ids[i], source=str(sources[a]), start_s=float(start_s[a]), n_seconds=int(b - a),
                labels=tuple(oof.labels[j] for j in given_lists[i]),
                suspicion=float((wrong_score[i] + missing_score[i]) / 2), wrong_score=float(wrong_score[i]),
                missing_score=float(missing_score[i]), label_quality=float(label_quality[i]), issue=bool(issues[i]),
                probability={m: float(probs[i, j]) for j, m in enumerate(oof.labels)},
                wrong=tuple(wrong), missing=tuple(missing), suggestion=suggestion,
                suggested_labels=new if suggestion == RELABEL else (), partial=partial,
                per_second=oof.scores[a:b].copy(),
            )
        )  # fmt: skip
    out.sort(key=lambda c: (-c.suspicion, c.clip_id))
    return out


def _find_issues(cl_filter, given_lists: list[list[int]], probs: np.ndarray) -> np.ndarray:
    """cleanlab's issue flags; all False where it cannot estimate them (a class with too few
    examples for its confident joint)."""
    try:
        return np.asarray(cl_filter.find_label_issues(given_lists, probs), dtype=bool)
    except (ValueError, IndexError):
        return np.zeros(len(given_lists), dtype=bool)
