"""Metrics: parity with sed_eval (segment-based) and sklearn (AP), threshold-tuning properties."""

from __future__ import annotations

import math
import warnings

import dcase_util
import numpy as np
import pytest
import sed_eval
from sklearn.metrics import average_precision_score

from sound_captions.metrics import (
    average_precision,
    mean_average_precision,
    segment_metrics,
    tune_thresholds,
)

LABELS = ["dog", "baby", "music", "siren", "never", "always"]


def random_rolls(seed: int, n_segments: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference and system rolls (n_segments, 6) with awkward labels.

    Columns: three ordinary labels; "siren" never predicted; "never" absent from the reference
    (the system still predicts it on some seeds); "always" active in every reference second.
    """
    rng = np.random.default_rng(seed)
    n = len(LABELS)
    # runs rather than i.i.d. seconds: a sticky on/off chain per label
    ref = np.zeros((n_segments, n), dtype=bool)
    state = rng.random(n) < 0.3
    for t in range(n_segments):
        flip = rng.random(n) < 0.25
        state = np.where(flip, ~state, state)
        ref[t] = state
    noise = rng.random((n_segments, n)) < 0.2
    est = ref ^ noise
    ref[:, 4] = False
    if seed % 2:
        est[:, 4] = False  # then "never" is neither in the reference nor predicted
    ref[:, 5] = True
    est[:, 3] = False
    return ref, est


def roll_to_events(roll: np.ndarray, labels: list[str]) -> dcase_util.containers.MetaDataContainer:
    """Contiguous active runs → events with onset/offset in whole seconds."""
    events = []
    for j, label in enumerate(labels):
        padded = np.r_[False, roll[:, j], False].astype(np.int8)
        edges = np.flatnonzero(np.diff(padded))
        for onset, offset in zip(edges[::2], edges[1::2], strict=True):
            events.append(
                {
                    "filename": "clip.wav",
                    "event_label": label,
                    "onset": float(onset),
                    "offset": float(offset),
                }
            )
    return dcase_util.containers.MetaDataContainer(events)


def sed_eval_results(
    files: list[tuple[np.ndarray, np.ndarray]], zero_score: bool
) -> sed_eval.sound_event.SegmentBasedMetrics:
    metrics = sed_eval.sound_event.SegmentBasedMetrics(LABELS, time_resolution=1.0)
    if zero_score:
        metrics.empty_system_output_handling = "zero_score"
    for ref, est in files:
        metrics.evaluate(
            roll_to_events(ref, LABELS),
            roll_to_events(est, LABELS),
            evaluated_length_seconds=float(ref.shape[0]),
        )
    return metrics


def assert_same(ours: float, theirs: float, what: str) -> None:
    if math.isnan(theirs):
        assert math.isnan(ours), f"{what}: ours {ours}, sed_eval NaN"
    else:
        # absolute 1e-6, relative for the eps-divided error rates of absent labels (~1e15)
        assert math.isclose(ours, theirs, rel_tol=1e-12, abs_tol=1e-6), (
            f"{what}: ours {ours}, sed_eval {theirs}"
        )


def assert_matches_sed_eval(ours: dict, metrics: sed_eval.sound_event.SegmentBasedMetrics):
    class_wise = metrics.results_class_wise_metrics()
    for label in LABELS:
        theirs = class_wise[label]
        mine = ours["class_wise"][label]
        assert mine["n_ref"] == theirs["count"]["Nref"]
        assert mine["n_sys"] == theirs["count"]["Nsys"]
        for key in ("precision", "recall", "f_measure"):
            assert_same(mine[key], theirs["f_measure"][key], f"{label} {key}")
        for key in ("error_rate", "deletion_rate", "insertion_rate"):
            assert_same(mine[key], theirs["error_rate"][key], f"{label} {key}")

    overall = metrics.results_overall_metrics()
    for key in ("precision", "recall", "f_measure"):
        assert_same(ours["overall"][key], overall["f_measure"][key], f"overall {key}")
    for key in ("error_rate", "substitution_rate", "deletion_rate", "insertion_rate"):
        assert_same(ours["overall"][key], overall["error_rate"][key], f"overall {key}")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # sed_eval's nanmean of all-NaN lists
        average = metrics.results_class_wise_average_metrics()
    for key in ("precision", "recall", "f_measure"):
        assert_same(ours["macro"][key], average["f_measure"][key], f"macro {key}")
    for key in ("error_rate", "deletion_rate", "insertion_rate"):
        assert_same(ours["macro"][key], average["error_rate"][key], f"macro {key}")


@pytest.mark.parametrize("zero_score", [False, True], ids=["nan", "zero_score"])
@pytest.mark.parametrize("seed", range(8))
def test_segment_metrics_match_sed_eval(seed, zero_score):
    ref, est = random_rolls(seed, n_segments=20 + 7 * seed)
    ours = segment_metrics(ref, est, LABELS, zero_score_empty_output=zero_score)
    assert ours["n_segments"] == ref.shape[0]
    assert_matches_sed_eval(ours, sed_eval_results([(ref, est)], zero_score))


def test_segment_metrics_of_several_files_equal_concatenated_rolls():
    files = [random_rolls(seed, n_segments=15 + seed) for seed in (11, 12, 13)]
    ref = np.concatenate([f[0] for f in files])
    est = np.concatenate([f[1] for f in files])
    assert_matches_sed_eval(segment_metrics(ref, est, LABELS), sed_eval_results(files, False))


def test_segment_metrics_edge_cases_match_sed_eval():
    n = 12
    cases = [
        (np.zeros((n, 6), bool), np.zeros((n, 6), bool)),  # nothing anywhere
        (np.ones((n, 6), bool), np.zeros((n, 6), bool)),  # system silent
        (np.zeros((n, 6), bool), np.ones((n, 6), bool)),  # reference silent
        (np.ones((n, 6), bool), np.ones((n, 6), bool)),  # perfect, all active
    ]
    for ref, est in cases:
        for zero_score in (False, True):
            ours = segment_metrics(ref, est, LABELS, zero_score_empty_output=zero_score)
            assert_matches_sed_eval(ours, sed_eval_results([(ref, est)], zero_score))


def test_segment_metrics_hand_computed_overall_error_rate():
    # 2 seconds, 3 labels. Second 0: ref {a, b}, sys {c} → FN 2, FP 1 → S 1, D 1.
    # Second 1: ref {a}, sys {a, b, c} → FP 2 → I 2. N = 3 → ER = (1 + 1 + 2) / 3.
    ref = np.array([[1, 1, 0], [1, 0, 0]], bool)
    est = np.array([[0, 0, 1], [1, 1, 1]], bool)
    result = segment_metrics(ref, est, ["a", "b", "c"])
    overall = result["overall"]
    assert (overall["substitutions"], overall["deletions"], overall["insertions"]) == (1, 1, 2)
    assert overall["error_rate"] == pytest.approx(4 / 3)
    assert result["class_wise"]["a"]["error_rate"] == pytest.approx(0.5)  # one deletion of two
    assert result["class_wise"]["c"]["error_rate"] > 1e15  # sed_eval's FP / eps for Nref = 0
    assert result["n_labels_present"] == 2
    assert result["class_wise"]["b"]["error_rate"] == pytest.approx(
        2.0
    )  # one deletion, one insertion
    assert result["macro_present"]["error_rate"] == pytest.approx((0.5 + 2.0) / 2)


def test_segment_metrics_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="n_segments"):
        segment_metrics(np.zeros((3, 2), bool), np.zeros((4, 2), bool), ["a", "b"])
    with pytest.raises(ValueError, match="labels"):
        segment_metrics(np.zeros((3, 2), bool), np.zeros((3, 2), bool), ["a"])


# -- average precision ----------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_average_precision_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    n, n_labels = 50 + 10 * seed, 5
    y = rng.random((n, n_labels)) < rng.uniform(0.05, 0.6, n_labels)
    y[0, :] = True  # at least one positive per label
    scores = y * rng.uniform(0.0, 0.5) + rng.random((n, n_labels))
    scores[:, 1] = np.round(scores[:, 1], 1)  # many ties
    ours = average_precision(y, scores)
    assert ours.shape == (n_labels,)
    for j in range(n_labels):
        expected = average_precision_score(y[:, j], scores[:, j])
        assert ours[j] == pytest.approx(expected, abs=1e-12)
        assert average_precision(y[:, j], scores[:, j]) == pytest.approx(expected, abs=1e-12)
    expected_map = np.mean(
        [average_precision_score(y[:, j], scores[:, j]) for j in range(n_labels)]
    )
    assert mean_average_precision(y, scores) == pytest.approx(expected_map, abs=1e-12)


def test_mean_average_precision_skips_labels_without_positives():
    y = np.array([[1, 0, 0], [0, 0, 0], [1, 0, 1], [0, 0, 0]], bool)
    scores = np.array([[0.9, 0.1, 0.2], [0.1, 0.9, 0.8], [0.8, 0.5, 0.7], [0.2, 0.3, 0.1]])
    ap = average_precision(y, scores)
    assert ap[0] == 1.0
    assert math.isnan(ap[1])
    assert ap[2] == pytest.approx(average_precision_score(y[:, 2], scores[:, 2]))
    assert mean_average_precision(y, scores) == pytest.approx((1.0 + ap[2]) / 2)
    assert math.isnan(mean_average_precision(np.zeros((3, 2), bool), np.zeros((3, 2))))


# -- thresholds -----------------------------------------------------------------------------


def _precision_recall_at(y: np.ndarray, s: np.ndarray, t: float) -> tuple[float, float]:
    decided = s >= t
    tp = int((decided & y).sum())
    precision = tp / decided.sum() if decided.any() else float("nan")
    return precision, tp / y.sum()


@pytest.mark.parametrize("seed", range(6))
def test_tuned_threshold_reaches_target_with_best_recall(seed):
    rng = np.random.default_rng(100 + seed)
    n = 200
    y = rng.random((n, 4)) < 0.3
    scores = np.clip(y * 0.35 + rng.normal(0.4, 0.15, (n, 4)), 0, 1).round(2)
    labels = ["a", "b", "c", "d"]
    target = 0.85
    thresholds = tune_thresholds(y, scores, labels, target_precision=target)
    for j, label in enumerate(labels):
        t = thresholds[label]
        candidates = np.unique(scores[:, j])
        reaching = [
            c for c in candidates if _precision_recall_at(y[:, j], scores[:, j], c)[0] >= target
        ]
        assert reaching, "the fixture should make the target reachable"
        best_recall = max(_precision_recall_at(y[:, j], scores[:, j], c)[1] for c in reaching)
        precision, recall = _precision_recall_at(y[:, j], scores[:, j], t)
        assert precision >= target
        assert recall == best_recall
        # t sits just below the highest score that gives the best recall (the fewest false
        # positives at that recall), midway to the next lower validation score
        best = max(c for c in reaching if _precision_recall_at(y[:, j], scores[:, j], c)[1] == best_recall)
        lower = candidates[candidates < best]
        assert (lower.max() if lower.size else -np.inf) < t <= best
        # '>' makes the same validation decisions as '>='
        np.testing.assert_array_equal(scores[:, j] >= t, scores[:, j] > t)


def test_threshold_separates_perfectly_separable_scores():
    y = np.array([[0], [0], [1], [1], [0], [1]], bool)
    scores = np.array([[0.1], [0.3], [0.6], [0.9], [0.2], [0.7]])
    assert tune_thresholds(y, scores, ["x"], target_precision=1.0) == {"x": pytest.approx(0.45)}


def test_unreachable_target_falls_back_to_best_f1():
    # positives score lowest; no threshold reaches precision 0.9
    y = np.array([1, 1, 0, 0, 0, 1, 0], bool)[:, None]
    scores = np.array([0.1, 0.2, 0.8, 0.7, 0.6, 0.3, 0.05])[:, None]
    t = tune_thresholds(y, scores, ["x"], target_precision=0.9)["x"]
    f1 = {}
    for c in np.unique(scores):
        p, r = _precision_recall_at(y[:, 0], scores[:, 0], c)
        f1[c] = 0.0 if p + r == 0 else 2 * p * r / (p + r)
    p, r = _precision_recall_at(y[:, 0], scores[:, 0], t)
    assert 2 * p * r / (p + r) == pytest.approx(max(f1.values()))
    assert p < 0.9


def test_labels_without_positives_get_the_default():
    y = np.array([[1, 0], [0, 0], [1, 0]], bool)
    scores = np.array([[0.9, 0.8], [0.1, 0.4], [0.7, 0.2]])
    thresholds = tune_thresholds(y, scores, ["a", "b"], default=0.42)
    assert thresholds["b"] == 0.42
    assert thresholds["a"] == pytest.approx(0.4)
    with pytest.raises(ValueError, match="target_precision"):
        tune_thresholds(y, scores, ["a", "b"], target_precision=0.0)
