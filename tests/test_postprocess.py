"""Post-processing: smoothing, gap merging, top-2, cue splitting. Golden files pin the WebVTT of
caption edge cases (regenerate with ``SC_UPDATE_GOLDEN=1`` and review the diff)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sound_captions.caption.postprocess import (
    PostprocessConfig,
    hysteresis,
    merge_gaps,
    runs,
    scores_to_cues,
    split_span,
    viterbi_two_state,
)
from sound_captions.caption.vtt import render_vtt, style_violations

GOLDEN = Path(__file__).parent / "golden"
LABELS = ["/m/05tny_", "/m/0ytgt", "/m/04rlf"]
TEXT = {"/m/05tny_": "[dog barking]", "/m/0ytgt": "[baby crying]", "/m/04rlf": "[music]"}
THRESHOLDS = dict.fromkeys(LABELS, 0.5)


def _track(n: int, on: list[tuple[int, int]], high: float = 0.9, low: float = 0.05) -> np.ndarray:
    x = np.full(n, low)
    for a, b in on:
        x[a:b] = high
    return x


def _golden(name: str, cues) -> str:
    text = render_vtt(cues)
    path = GOLDEN / f"{name}.vtt"
    if os.environ.get("SC_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name}: output differs from {path}"
    assert style_violations(text) == []
    return text


def test_long_event_is_split_into_continues_cues():
    scores = np.stack([_track(24, [(2, 22)]), _track(24, []), _track(24, [])], axis=1)
    cues, _ = scores_to_cues(scores, LABELS, THRESHOLDS, TEXT, PostprocessConfig())
    assert [(c.start_ms, c.end_ms, c.text) for c in cues] == [
        (2000, 8000, "[dog barking]"),
        (8000, 15000, "[dog barking continues]"),
        (15000, 22000, "[dog barking continues]"),
    ]
    _golden("long_event_continues", cues)


def test_third_weaker_sound_is_dropped():
    dog = _track(12, [(1, 10)], high=0.95)
    baby = _track(12, [(3, 9)], high=0.8)
    music = _track(12, [(2, 11)], high=0.6)  # weakest: never one of the two shown while others run
    cues, active = scores_to_cues(np.stack([dog, baby, music], axis=1), LABELS, THRESHOLDS, TEXT, PostprocessConfig())
    assert active.sum(axis=1).max() <= 2
    texts = [(c.start_ms, c.end_ms, c.text) for c in cues]
    assert (1000, 5000, "[dog barking]") in texts and (5000, 10000, "[dog barking continues]") in texts
    assert (3000, 9000, "[baby crying]") in texts
    # music shows only while fewer than two stronger sounds play: before the baby, after it
    assert [t for t in texts if t[2] == "[music]"] == [(2000, 3000, "[music]"), (9000, 11000, "[music]")]
    _golden("two_overlapping_third_dropped", cues)


def test_one_second_flicker_gap_is_merged():
    dog = _track(12, [(1, 5), (6, 10)])
    cues, _ = scores_to_cues(np.stack([dog, _track(12, []), _track(12, [])], axis=1), LABELS, THRESHOLDS, TEXT, PostprocessConfig())
    assert [(c.start_ms, c.end_ms) for c in cues] == [(1000, 5000), (5000, 10000)]  # 9 s: split once
    _golden("flicker_gap_merged", cues)
    # A two-second gap stays a gap.
    dog2 = _track(12, [(1, 4), (6, 10)])
    cues2, _ = scores_to_cues(np.stack([dog2, _track(12, []), _track(12, [])], axis=1), LABELS, THRESHOLDS, TEXT, PostprocessConfig())
    assert [(c.start_ms, c.end_ms) for c in cues2] == [(1000, 4000), (6000, 10000)]


def _noisy_track() -> np.ndarray:
    rng = np.random.default_rng(3)
    base = _track(40, [(5, 18), (26, 35)], high=0.7, low=0.2)
    return np.clip(base + rng.normal(0, 0.2, 40), 0, 1)


@pytest.mark.parametrize("smoothing", ["hysteresis", "viterbi"])
def test_noisy_track_golden(smoothing):
    noisy = _noisy_track()
    scores = np.stack([noisy, _track(40, []), _track(40, [])], axis=1)
    cues, active = scores_to_cues(scores, LABELS, THRESHOLDS, TEXT, PostprocessConfig(smoothing=smoothing, merge_gap_s=0))
    raw_switches = int(np.abs(np.diff((noisy >= 0.5).astype(int))).sum())
    switches = int(np.abs(np.diff(active[:, 0].astype(int))).sum())
    assert switches < raw_switches  # smoothing removes flicker
    if smoothing == "viterbi":  # the decode keeps exactly the two true events (5-18, 26-35)
        assert switches == 4
        assert runs(active[:, 0]) == [(7, 18), (26, 35)]
    else:  # hysteresis holds events through dips but lets isolated blips through
        assert switches > 4
    _golden(f"noisy_{smoothing}", cues)


def test_hysteresis_and_viterbi_units():
    x = np.array([0.1, 0.6, 0.4, 0.35, 0.2, 0.55, 0.1])
    assert hysteresis(x, 0.5, 0.3).tolist() == [False, True, True, True, False, True, False]
    assert viterbi_two_state(np.array([0.9] * 5 + [0.4] + [0.9] * 5), 0.5, 2.0).all()  # one dip bridged
    assert not viterbi_two_state(np.array([0.1] * 5 + [0.6] + [0.1] * 5), 0.5, 2.0).any()  # one blip ignored
    assert merge_gaps(np.array([1, 0, 1, 0, 0, 1], dtype=bool), 1).tolist() == [True, True, True, False, False, True]


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 200), st.integers(1, 10))
def test_split_span_properties(length, max_len):
    parts = split_span(10, 10 + length, max_len)
    assert parts[0][0] == 10 and parts[-1][1] == 10 + length
    assert all(b - a >= 1 and b - a <= max_len for a, b in parts)
    assert all(p[1] == q[0] for p, q in zip(parts, parts[1:], strict=False))
    assert len(parts) == -(-length // max_len)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.floats(0, 1), min_size=3, max_size=3), min_size=1, max_size=60),
    st.sampled_from(["hysteresis", "viterbi", "none"]),
)
def test_any_scores_give_cues_that_meet_the_style(rows, smoothing):
    scores = np.array(rows)
    cfg = PostprocessConfig(smoothing=smoothing)
    cues, active = scores_to_cues(scores, LABELS, THRESHOLDS, TEXT, cfg)
    assert active.sum(axis=1).max() <= cfg.max_simultaneous
    assert all(1000 <= c.duration_ms <= 7000 and c.start_ms >= 0 and c.end_ms <= len(rows) * 1000 for c in cues)
    for t in range(len(rows)):
        assert sum(c.start_ms <= t * 1000 < c.end_ms for c in cues) <= cfg.max_simultaneous
    assert style_violations(render_vtt(cues)) == []


def test_uncaptioned_labels_do_not_take_a_slot():
    speech_like = _track(10, [(0, 10)], high=0.99)  # a label without caption text
    dog, music = _track(10, [(0, 10)], high=0.9), _track(10, [(0, 10)], high=0.8)
    labels = ["/m/09x0r", *LABELS[:1], LABELS[2]]
    cues, _ = scores_to_cues(np.stack([speech_like, dog, music], axis=1), labels, dict.fromkeys(labels, 0.5), TEXT, PostprocessConfig())
    assert {c.text for c in cues} == {"[dog barking]", "[music]", "[dog barking continues]", "[music continues]"}
