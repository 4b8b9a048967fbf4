"""Evaluation: per-second label rolls and scores → segment metrics, AP, and tuned thresholds.

Pure numpy, no sed_eval or sklearn at run time, but numerically the same as them:

- ``segment_metrics`` reproduces ``sed_eval.sound_event.SegmentBasedMetrics`` with
  ``time_resolution=1.0`` (one segment = second *k*, see ARCHITECTURE.md "Time"): class-wise
  P/R/F/ER, "overall" (micro) figures and the class-wise averages ("macro"), including
  sed_eval's zero-division conventions (listed in ``segment_metrics``' docstring).
- ``average_precision`` is sklearn's ``average_precision_score`` (step-wise AP, no
  interpolation).
- ``tune_thresholds`` picks a per-label decision threshold on validation scores;
  ``tune_thresholds_pooled`` falls back to one pooled threshold for labels with few positives.

Segment-based counts are additive, so evaluating several media at once by concatenating their
rolls along the segment axis gives exactly what sed_eval gives when it evaluates them one file
after the other with the same metric object.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# sed_eval divides the error-rate terms by (Nref + eps) with this eps.
SED_EVAL_EPS = float(np.spacing(1))


def _check_rolls(
    y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.ndim != 2 or y_true.shape != y_pred.shape:
        raise ValueError(
            f"y_true and y_pred must both be (n_segments, n_labels); got {y_true.shape} and "
            f"{y_pred.shape}"
        )
    if y_true.shape[1] != len(labels):
        raise ValueError(f"{y_true.shape[1]} label columns but {len(labels)} labels")
    return y_true.astype(bool), y_pred.astype(bool)


def _precision(n_tp: float, n_sys: float, zero_score_empty_output: bool) -> float:
    if n_sys == 0:
        return 0.0 if zero_score_empty_output else float("nan")
    return float(n_tp / n_sys)


def _recall(n_tp: float, n_ref: float) -> float:
    return float("nan") if n_ref == 0 else float(n_tp / n_ref)


def _f_measure(precision: float, recall: float) -> float:
    # Same operations as sed_eval.metric.f_measure with beta=1 (NaN propagates).
    if precision == 0 and recall == 0:
        return 0.0
    return float(2.0 * precision * recall / (precision + recall))


def _rate(count: float, n_ref: float) -> float:
    return float(count / (n_ref + SED_EVAL_EPS))


def _nanmean(values: list[float]) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN → NaN, as sed_eval returns
        return float(np.nanmean(values)) if values else float("nan")


def segment_metrics(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    labels: Sequence[str],
    *,
    zero_score_empty_output: bool = False,
) -> dict:
    """Segment-based metrics over 1-s segments, as sed_eval's ``SegmentBasedMetrics`` computes them.

    Args:
        y_true: (n_segments, n_labels) bool, reference activity of each label in each second.
        y_pred: (n_segments, n_labels) bool, system output.
        labels: the n_labels label names (keys of ``class_wise``).
        zero_score_empty_output: sed_eval's ``empty_system_output_handling='zero_score'``:
            precision is 0 (not NaN) when the system output for a class (or overall) is empty.

    Returns:
        A dict:

        - ``n_segments``: int.
        - ``class_wise``: label → {``n_ref``, ``n_sys``, ``n_tp``, ``n_fp``, ``n_fn`` (ints),
          ``precision``, ``recall``, ``f_measure``, ``error_rate``, ``deletion_rate``,
          ``insertion_rate``}. Class-wise ER = D + I with D = FN/N and I = FP/N, N = active
          reference segments of the class (no substitutions class-wise).
        - ``overall`` (micro): the same counts summed over labels, plus ``substitutions``,
          ``deletions``, ``insertions`` and ``substitution_rate``; in each segment
          S = min(FN, FP), D = max(0, FN - FP), I = max(0, FP - FN), and
          ER = (ΣS + ΣD + ΣI) / ΣN.
        - ``macro``: class-wise averages (``precision``, ``recall``, ``f_measure``,
          ``error_rate``, ``deletion_rate``, ``insertion_rate``).
        - ``macro_present``: the same averages over the labels with at least one active
          reference segment only (not a sed_eval figure; ``n_labels_present`` of them).

    sed_eval conventions reproduced here (they matter for rare labels):

    - precision is NaN when the system output is empty (Nsys = 0), recall is NaN when the
      reference is empty (Nref = 0); F is 0 when P = R = 0, otherwise 2PR/(P+R), so NaN
      whenever P or R is NaN.
    - rates divide by (Nref + eps) with eps = ``np.spacing(1)`` ≈ 2.2e-16, not by Nref: a
      label with no reference segments has ER = 0 if it is never predicted, and
      ER = FP / eps ≈ 4.5e15 · FP if it is.
    - ``macro`` values are ``np.nanmean`` over labels: labels whose value is NaN are left out
      of the average (e.g. a label never predicted has NaN precision, hence NaN F, and drops
      out of macro F instead of counting as 0), while the huge ERs above stay in and dominate
      macro ER. An average over no finite values is NaN.
    """
    y_true, y_pred = _check_rolls(y_true, y_pred, labels)
    tp = y_true & y_pred
    fp = y_pred & ~y_true
    fn = y_true & ~y_pred

    class_wise: dict[str, dict[str, float | int]] = {}
    for j, label in enumerate(labels):
        n_ref = int(y_true[:, j].sum())
        n_sys = int(y_pred[:, j].sum())
        n_tp, n_fp, n_fn = int(tp[:, j].sum()), int(fp[:, j].sum()), int(fn[:, j].sum())
        precision = _precision(n_tp, n_sys, zero_score_empty_output)
        recall = _recall(n_tp, n_ref)
        deletion_rate = _rate(n_fn, n_ref)
        insertion_rate = _rate(n_fp, n_ref)
        class_wise[label] = {
            "n_ref": n_ref,
            "n_sys": n_sys,
            "n_tp": n_tp,
            "n_fp": n_fp,
            "n_fn": n_fn,
            "precision": precision,
            "recall": recall,
            "f_measure": _f_measure(precision, recall),
            "error_rate": float(deletion_rate + insertion_rate),
            "deletion_rate": deletion_rate,
            "insertion_rate": insertion_rate,
        }

    fn_per_segment = fn.sum(axis=1)
    fp_per_segment = fp.sum(axis=1)
    n_ref = int(y_true.sum())
    n_sys = int(y_pred.sum())
    n_tp = int(tp.sum())
    substitutions = int(np.minimum(fn_per_segment, fp_per_segment).sum())
    deletions = int(np.maximum(0, fn_per_segment - fp_per_segment).sum())
    insertions = int(np.maximum(0, fp_per_segment - fn_per_segment).sum())
    precision = _precision(n_tp, n_sys, zero_score_empty_output)
    recall = _recall(n_tp, n_ref)
    substitution_rate = _rate(substitutions, n_ref)
    deletion_rate = _rate(deletions, n_ref)
    insertion_rate = _rate(insertions, n_ref)
    overall = {
        "n_ref": n_ref,
        "n_sys": n_sys,
        "n_tp": n_tp,
        "n_fp": int(fp.sum()),
        "n_fn": int(fn.sum()),
        "substitutions": substitutions,
        "deletions": deletions,
        "insertions": insertions,
        "precision": precision,
        "recall": recall,
        "f_measure": _f_measure(precision, recall),
        "error_rate": float(substitution_rate + deletion_rate + insertion_rate),
        "substitution_rate": substitution_rate,
        "deletion_rate": deletion_rate,
        "insertion_rate": insertion_rate,
    }

    averaged = (
        "precision",
        "recall",
        "f_measure",
        "error_rate",
        "deletion_rate",
        "insertion_rate",
    )
    present = [m for m in class_wise.values() if m["n_ref"] > 0]
    return {
        "n_segments": int(y_true.shape[0]),
        "class_wise": class_wise,
        "overall": overall,
        "macro": {k: _nanmean([m[k] for m in class_wise.values()]) for k in averaged},
        "macro_present": {k: _nanmean([m[k] for m in present]) for k in averaged},
        "n_labels_present": len(present),
    }


# -- ranking metrics ----------------------------------------------------------------------------


def _ranked_counts(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per distinct score, descending: (score, true positives, false positives) at ``>= score``."""
    y_true = np.asarray(y_true).astype(bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if y_true.shape != scores.shape:
        raise ValueError(f"y_true {y_true.shape} and scores {scores.shape} differ in shape")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite")
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores = scores[order]
    hits = y_true[order]
    # the last index of each run of equal scores: ties enter together
    last = np.r_[np.flatnonzero(np.diff(sorted_scores)), sorted_scores.size - 1]
    tps = np.cumsum(hits)[last]
    fps = last + 1 - tps
    return sorted_scores[last], tps, fps


def average_precision(y_true: np.ndarray, scores: np.ndarray) -> float | np.ndarray:
    """Average precision, step-wise (no interpolation), as sklearn's ``average_precision_score``.

    AP = Σ_k (R_k − R_{k−1}) · P_k over the distinct score thresholds in descending order.

    Args:
        y_true: (n,) or (n, n_labels) bool, reference.
        scores: same shape, real-valued scores (higher = more likely active).

    Returns:
        A float for 1-D input, or an (n_labels,) float64 array for 2-D input. A label with no
        positive example has NaN AP (precision/recall are undefined for it).
    """
    y_true = np.asarray(y_true)
    scores = np.asarray(scores)
    if y_true.ndim == 2:
        if y_true.shape != scores.shape:
            raise ValueError(f"y_true {y_true.shape} and scores {scores.shape} differ in shape")
        return np.array(
            [average_precision(y_true[:, j], scores[:, j]) for j in range(y_true.shape[1])],
            dtype=np.float64,
        )
    _, tps, fps = _ranked_counts(y_true, scores)
    n_pos = tps[-1] if tps.size else 0
    if n_pos == 0:
        return float("nan")
    precision = tps / (tps + fps)
    recall = tps / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def mean_average_precision(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Mean of the per-label APs of (n, n_labels) inputs over labels with ≥ 1 positive example.

    Labels without positives have no defined AP and are skipped (not counted as 0 or 1), so
    the figure does not move when labels absent from an evaluation set are added. NaN when
    no label has a positive example.
    """
    if np.asarray(y_true).ndim != 2:
        raise ValueError("mean_average_precision wants (n, n_labels) inputs")
    return _nanmean(list(average_precision(y_true, scores)))


# -- thresholds ---------------------------------------------------------------------------------


def _threshold_between(candidates: np.ndarray, k: int) -> float:
    """Midpoint between distinct score k and the next lower one (or score k if it is lowest).

    Any threshold in (candidates[k+1], candidates[k]] makes the same decisions with the rule
    ``score >= threshold``; the midpoint also makes them with ``score > threshold``.
    """
    if k + 1 < candidates.size:
        return float((candidates[k] + candidates[k + 1]) / 2.0)
    return float(candidates[k])


@dataclass(frozen=True)
class ThresholdTuning:
    """Tuned thresholds and how each was found.

    Attributes:
        thresholds: label → threshold.
        positives: label → number of positive validation windows.
        pooled: the threshold tuned over every label's scores at once (``None`` when the
            validation data has no positives at all).
        fallback: labels with fewer than ``min_positives`` positives, which got ``pooled``
            (or ``default`` when there is no pooled threshold).
    """

    thresholds: dict[str, float]
    positives: dict[str, int]
    pooled: float | None
    fallback: tuple[str, ...]


def _tune_one(y_true: np.ndarray, scores: np.ndarray, target_precision: float) -> float | None:
    """The threshold rule of :func:`tune_thresholds` for one score column; ``None`` without positives."""
    candidates, tps, fps = _ranked_counts(y_true, scores)
    n_pos = int(tps[-1]) if tps.size else 0
    if n_pos == 0:
        return None
    precision = tps / (tps + fps)
    reaching = np.flatnonzero(precision >= target_precision)
    if reaching.size:
        # The best recall that keeps the target precision; of the thresholds giving it, the
        # highest (fewest false positives): lowering further would only admit negatives.
        best_tp = tps[reaching].max()
        k = int(reaching[np.argmax(tps[reaching] == best_tp)])
    else:
        f1 = 2.0 * tps / (tps + fps + n_pos)
        k = int(np.argmax(f1))  # first maximum = highest threshold among ties
    return _threshold_between(candidates, k)


def tune_thresholds_pooled(
    y_true: np.ndarray,
    scores: np.ndarray,
    labels: Sequence[str],
    target_precision: float = 0.9,
    default: float = 0.5,
    min_positives: int = 5,
) -> ThresholdTuning:
    """Per-label thresholds as :func:`tune_thresholds`, except that a label with fewer than
    ``min_positives`` positive validation windows gets the *pooled* threshold: the same rule
    applied to all labels' (window, label) scores together. A threshold tuned on two or three
    positives sits wherever those few scores happen to fall; the pooled one rests on all of them.
    """
    if not 0.0 < target_precision <= 1.0:
        raise ValueError(f"target_precision must be in (0, 1], got {target_precision}")
    if min_positives < 0:
        raise ValueError(f"min_positives must be >= 0, got {min_positives}")
    y_true = np.asarray(y_true).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    if y_true.ndim != 2 or y_true.shape != scores.shape:
        raise ValueError(f"y_true {y_true.shape} and scores {scores.shape} must be (n, n_labels)")
    if y_true.shape[1] != len(labels):
        raise ValueError(f"{y_true.shape[1]} label columns but {len(labels)} labels")

    positives = {label: int(y_true[:, j].sum()) for j, label in enumerate(labels)}
    tunable = [positives[label] > 0 and positives[label] >= min_positives for label in labels]
    pooled = None
    if min_positives > 0 and not all(tunable):
        pooled = _tune_one(y_true.ravel(), scores.ravel(), target_precision)
    thresholds: dict[str, float] = {}
    fallback: list[str] = []
    for j, label in enumerate(labels):
        if tunable[j]:
            thresholds[label] = float(_tune_one(y_true[:, j], scores[:, j], target_precision))
        else:
            thresholds[label] = float(default if pooled is None else pooled)
            fallback.append(label)
    return ThresholdTuning(thresholds, positives, pooled, tuple(fallback))


def tune_thresholds(
    y_true: np.ndarray,
    scores: np.ndarray,
    labels: Sequence[str],
    target_precision: float = 0.9,
    default: float = 0.5,
) -> dict[str, float]:
    """Per-label decision thresholds from validation scores; decide "active" when score >= t.

    For each label, among the thresholds whose validation precision reaches
    ``target_precision``, take those with the highest recall, and of these the highest one
    (the best precision at that recall; it sits midway between the lowest recalled positive and
    the next lower score, so separable validation data gets a threshold with a margin). When no threshold
    reaches the target, take the one with the best F1 (the highest such threshold on ties).
    A label without positive validation examples gets ``default``. (Training uses
    :func:`tune_thresholds_pooled`, which also guards labels with only a few positives.)

    Args:
        y_true: (n, n_labels) bool, validation reference.
        scores: (n, n_labels) float, validation scores (e.g. sigmoid probabilities).
        labels: the n_labels label names (keys of the result).
        target_precision: in (0, 1].
        default: threshold for labels that cannot be tuned.

    Returns:
        label → threshold. Thresholds lie between validation scores (see
        ``_threshold_between``), so ``>=`` and ``>`` give the same validation decisions.
    """
    return tune_thresholds_pooled(y_true, scores, labels, target_precision, default, min_positives=0).thresholds


def json_safe(value):
    """NaN/inf → None, numpy scalars/arrays → Python, recursively (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
