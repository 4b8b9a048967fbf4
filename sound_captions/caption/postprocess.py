"""Per-second label probabilities → stable ON/OFF decisions → sound events → caption cues.

    scores (T, L) ─► top-2 per second ─► per-label smoothing (hysteresis | two-state Viterbi)
                 ─► merge short gaps ─► most specific class only (ontology) ─► drop too-short
                    events ─► split long events into cues ("[dog barking]", then
                    "[dog barking continues]")

Times are whole seconds (second *k* is [k, k+1)); cue times are integer milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from sound_captions.caption.cues import Cue
from sound_captions.caption.style import continues_text
from sound_captions.ontology import Ontology

Smoothing = Literal["hysteresis", "viterbi", "none"]


@dataclass(frozen=True)
class PostprocessConfig:
    """How scores become cues (the same options on the CLI and in job configs).

    Attributes:
        smoothing: ``hysteresis`` (on at ≥ threshold, off below ``off_ratio`` × threshold),
            ``viterbi`` (two-state decode with a ``switch_penalty`` in log-odds), or ``none``.
        off_ratio: hysteresis release level as a fraction of the label's threshold.
        switch_penalty: Viterbi cost of each ON↔OFF switch (nats).
        merge_gap_s: OFF gaps of at most this many seconds inside an event are filled.
        min_event_s: events shorter than this are dropped (a cue lasts at least 1 s).
        max_cue_s: a longer event is split into cues of at most this length.
        max_simultaneous: at most this many labels are captioned in the same second (the most
            confident win).
        most_specific: in a second where a label and one of its AudioSet ontology ancestors are
            both on, caption the more specific one only (``[piano music]``, not also
            ``[music]``); the ancestor is still captioned in the seconds where it is on alone.
            The scores file keeps both.
    """

    smoothing: Smoothing = "hysteresis"
    off_ratio: float = 0.6
    switch_penalty: float = 2.0
    merge_gap_s: int = 1
    min_event_s: int = 1
    max_cue_s: int = 7
    max_simultaneous: int = 2
    most_specific: bool = True

    def __post_init__(self) -> None:
        if self.smoothing not in ("hysteresis", "viterbi", "none"):
            raise ValueError(f"smoothing must be hysteresis, viterbi or none, not {self.smoothing!r}")
        if self.min_event_s < 1 or self.max_cue_s < max(1, self.min_event_s):
            raise ValueError("need 1 <= min_event_s <= max_cue_s")


@dataclass(frozen=True)
class Event:
    label: str
    start_s: int
    end_s: int  # exclusive
    confidence: float


def hysteresis(scores: np.ndarray, on: float, off: float) -> np.ndarray:
    """(T,) scores → (T,) bool: switch on at ``>= on``, stay on until ``< off``."""
    active = np.zeros(scores.shape[0], dtype=bool)
    state = False
    for t, s in enumerate(scores):
        state = s >= on if not state else s >= off
        active[t] = state
    return active


def viterbi_two_state(scores: np.ndarray, threshold: float, switch_penalty: float) -> np.ndarray:
    """(T,) scores → (T,) bool: the most likely ON/OFF path where each second's evidence is the
    log-odds of its score against ``threshold`` and each switch costs ``switch_penalty``."""
    eps = 1e-6
    p = np.clip(scores.astype(np.float64), eps, 1 - eps)
    thr = float(np.clip(threshold, eps, 1 - eps))
    gain_on = (np.log(p) - np.log(thr)) - (np.log(1 - p) - np.log(1 - thr))  # >0 favours ON
    n = p.shape[0]
    if n == 0:
        return np.zeros(0, dtype=bool)
    score = np.array([0.0, gain_on[0]])  # [off, on]
    back = np.zeros((n, 2), dtype=np.int8)
    for t in range(1, n):
        stay_off, from_on = score[0], score[1] - switch_penalty
        stay_on, from_off = score[1], score[0] - switch_penalty
        back[t, 0] = 0 if stay_off >= from_on else 1
        back[t, 1] = 1 if stay_on >= from_off else 0
        score = np.array([max(stay_off, from_on), max(stay_on, from_off) + gain_on[t]])
    path = np.zeros(n, dtype=bool)
    state = int(score[1] > score[0])
    for t in range(n - 1, -1, -1):
        path[t] = bool(state)
        state = back[t, state]
    return path


def keep_most_confident(scores: np.ndarray, thresholds: np.ndarray, k: int) -> np.ndarray:
    """Zero the scores of all but the ``k`` labels with the highest threshold-relative scores in
    each second, so no more than ``k`` sounds are captioned at once."""
    if scores.shape[1] <= k:
        return scores
    relative = scores / np.maximum(thresholds, 1e-6)[None, :]
    order = np.argsort(-relative, axis=1, kind="stable")
    keep = np.zeros_like(scores, dtype=bool)
    np.put_along_axis(keep, order[:, :k], True, axis=1)
    return np.where(keep, scores, 0.0)


def runs(active: np.ndarray) -> list[tuple[int, int]]:
    """(T,) bool → [(start, end_exclusive), ...] of True runs."""
    padded = np.concatenate([[False], active.astype(bool), [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def merge_gaps(active: np.ndarray, max_gap: int) -> np.ndarray:
    """Fill OFF gaps of at most ``max_gap`` seconds between two ON runs."""
    out = active.copy()
    spans = runs(active)
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        if start - end <= max_gap:
            out[end:start] = True
    return out


def decide(scores: np.ndarray, thresholds: np.ndarray, cfg: PostprocessConfig) -> np.ndarray:
    """(T, L) scores → (T, L) bool activity after top-k, smoothing and gap merging."""
    scores = keep_most_confident(np.asarray(scores, dtype=np.float64), thresholds, cfg.max_simultaneous)
    active = np.zeros(scores.shape, dtype=bool)
    for j in range(scores.shape[1]):
        column, thr = scores[:, j], float(thresholds[j])
        if cfg.smoothing == "hysteresis":
            a = hysteresis(column, thr, thr * cfg.off_ratio)
        elif cfg.smoothing == "viterbi":
            a = viterbi_two_state(column, thr, cfg.switch_penalty)
        else:
            a = column >= thr
        active[:, j] = merge_gaps(a, cfg.merge_gap_s) if cfg.merge_gap_s > 0 else a
    # Smoothing may re-open a label that top-k removed; enforce the limit once more.
    if scores.shape[1] > cfg.max_simultaneous:
        over = active.sum(axis=1) > cfg.max_simultaneous
        if over.any():
            masked = keep_most_confident(np.where(active, scores + 1e-9, 0.0), thresholds, cfg.max_simultaneous)
            active[over] = masked[over] > 0
    return active


def ancestor_pairs(labels: list[str]) -> list[tuple[int, int]]:
    """``(ancestor, descendant)`` column pairs of ``labels`` in the AudioSet ontology (at any
    depth; labels that are not ontology classes have none)."""
    ontology = Ontology.load()
    index = {mid: j for j, mid in enumerate(labels)}
    pairs = []
    for i, mid in enumerate(labels):
        if mid in ontology.classes:
            below = ontology.descendants(mid, include_self=False)
            pairs += [(i, index[d]) for d in sorted(below & index.keys())]
    return pairs


def keep_most_specific(active: np.ndarray, pairs: list[tuple[int, int]]) -> np.ndarray:
    """(T, L) activity → the same with each ancestor switched off in the seconds where one of
    its descendants is on (decided on the input, so a chain A ⊃ B ⊃ C keeps only C)."""
    out = active.copy()
    for ancestor, descendant in pairs:
        out[:, ancestor] &= ~active[:, descendant]
    return out


def frames_to_events(scores: np.ndarray, active: np.ndarray, labels: list[str], cfg: PostprocessConfig) -> list[Event]:
    """ON runs of each label → events of at least ``min_event_s`` seconds."""
    events = []
    for j, label in enumerate(labels):
        for start, end in runs(active[:, j]):
            if end - start >= cfg.min_event_s:
                events.append(Event(label, start, end, float(np.mean(scores[start:end, j]))))
    return sorted(events, key=lambda e: (e.start_s, e.label))


def split_span(start_s: int, end_s: int, max_len: int) -> list[tuple[int, int]]:
    """Split [start, end) into the fewest near-equal whole-second parts of at most ``max_len``."""
    length = end_s - start_s
    n = -(-length // max_len)
    bounds = [start_s + (length * i) // n for i in range(n + 1)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def events_to_cues(events: list[Event], caption_text: dict[str, str], cfg: PostprocessConfig) -> list[Cue]:
    """Events → cues of 1..``max_cue_s`` seconds; labels without caption text are skipped."""
    cues = []
    for event in events:
        text = caption_text.get(event.label)
        if not text:
            continue
        for index, (a, b) in enumerate(split_span(event.start_s, event.end_s, cfg.max_cue_s)):
            cues.append(Cue(a * 1000, b * 1000, text if index == 0 else continues_text(text), event.label, event.confidence))
    return sorted(cues, key=lambda c: (c.start_ms, -c.confidence, c.label))


def scores_to_cues(
    scores: np.ndarray, labels: list[str], thresholds: dict[str, float], caption_text: dict[str, str], cfg: PostprocessConfig
) -> tuple[list[Cue], np.ndarray]:
    """The whole post-processing: (T, L) probabilities → (cues, (T, L) activity)."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1, len(labels))
    captioned = np.array([bool(caption_text.get(m)) for m in labels])
    thr = np.array([thresholds.get(m, 0.5) for m in labels], dtype=np.float64)
    # Labels that are never captioned must not take one of the simultaneous slots.
    visible = np.where(captioned[None, :], scores, 0.0)
    active = decide(visible, thr, cfg)
    if cfg.most_specific:
        active = keep_most_specific(active, ancestor_pairs(list(labels)))
    return events_to_cues(frames_to_events(scores, active, labels, cfg), caption_text, cfg), active
