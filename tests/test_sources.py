"""Source readers (AudioSet segment CSV, strong TSV) and label selection."""

from __future__ import annotations

import json
import random
from importlib import resources
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sound_captions.sources.audioset import read_audioset_segments, read_audioset_strong
from sound_captions.sources.requests import ClipRequest, LabelEvent, seconds_to_ms
from sound_captions.sources.select import select_clips, selection_counts

DATA = Path(__file__).parent / "data"
EXCERPT = DATA / "audioset_excerpt.csv"
STRONG = DATA / "strong_excerpt.tsv"
DOG, BARK, CAT, SPEECH, MUSIC, MEOW, CAR = (
    "/m/0bt9lr", "/m/05tny_", "/m/01yrx", "/m/09x0r", "/m/04rlf", "/m/07qrkrw", "/m/0k4j",
)  # fmt: skip


class PackagedOntology:
    """The two ontology calls selection uses, read from the packaged ontology.json.

    Stands in for ``sound_captions.ontology.Ontology`` (same method names) until it is merged.
    """

    def __init__(self) -> None:
        text = resources.files("sound_captions").joinpath("data/ontology.json").read_text()
        nodes = json.loads(text)
        self.children = {n["id"]: list(n["child_ids"]) for n in nodes}
        self.by_name = {n["name"].lower(): n["id"] for n in nodes}

    def resolve(self, name_or_mid: str) -> str:
        if name_or_mid in self.children:
            return name_or_mid
        try:
            return self.by_name[name_or_mid.lower()]
        except KeyError:
            raise KeyError(f"unknown label {name_or_mid!r}") from None

    def descendants(self, mid: str, include_self: bool = True) -> set[str]:
        out, todo = set(), [mid]
        while todo:
            m = todo.pop()
            if m not in out:
                out.add(m)
                todo.extend(self.children[m])
        return out if include_self else out - {mid}


@pytest.fixture(scope="module")
def ontology() -> PackagedOntology:
    return PackagedOntology()


@pytest.fixture(scope="module")
def excerpt() -> list[ClipRequest]:
    requests, failures = read_audioset_segments(EXCERPT)
    assert failures == []
    return requests


# -- segment CSV -------------------------------------------------------------------------------


def test_segments_parse_every_row_of_the_excerpt(excerpt: list[ClipRequest]) -> None:
    assert len(excerpt) == 40
    first = excerpt[0]
    assert first == ClipRequest(
        clip_id="--PJHxphWEs_30000",
        source="yt:--PJHxphWEs",
        start_s=30.0,
        end_s=40.0,
        labels=(SPEECH, "/t/dd00088"),
        origin="audioset_excerpt.csv:4",
    )
    assert first.ytid == "--PJHxphWEs"
    assert len({r.clip_id for r in excerpt}) == 40
    assert all(r.end_s - r.start_s == pytest.approx(10.0) for r in excerpt)


def test_segments_keep_every_label_of_a_multi_label_row(excerpt: list[ClipRequest]) -> None:
    row = next(r for r in excerpt if r.clip_id == "-QoZQDW4qjU_30000")
    assert row.labels == (MUSIC, "/m/068hy", "/m/07r_k2n", DOG, "/m/0jbk", "/t/dd00136")


def test_segments_from_text_equal_segments_from_path(excerpt: list[ClipRequest]) -> None:
    from_text, _ = read_audioset_segments(EXCERPT.read_text(), name="audioset_excerpt.csv")
    assert from_text == excerpt


MALFORMED_CSV = """\
# Segments csv created by hand for tests
# num_ytids=9
# YTID, start_seconds, end_seconds, positive_labels
goodA123456, 0.000, 10.000, "/m/09x0r"
toofew12345, 0.000, 10.000
badnumber11, abc, 10.000, "/m/09x0r"
backwards11, 20.000, 10.000, "/m/09x0r"
unknownmid1, 0.000, 10.000, "/m/09x0r,/m/zzzzzz"
notamid1234, 0.000, 10.000, "Speech"
negative123, -5.000, 5.000, "/m/09x0r"
goodA123456, 0.000, 10.000, "/m/04rlf"
goodB123456, 1.5, 11.5, "/m/04rlf,/m/09x0r"
"""


def test_malformed_segment_rows_become_failures_and_the_rest_parse() -> None:
    requests, failures = read_audioset_segments(
        MALFORMED_CSV, known_labels={SPEECH, MUSIC}, name="hand.csv"
    )
    assert [r.clip_id for r in requests] == ["goodA123456_0", "goodB123456_1500"]
    assert requests[1].start_s == 1.5 and requests[1].end_s == 11.5
    by_line = {f.item.split(":")[1]: f for f in failures}
    assert sorted(by_line) == ["10", "11", "5", "6", "7", "8", "9"]
    assert {f.reason for k, f in by_line.items() if k != "11"} == {"malformed"}
    assert by_line["11"].reason == "duplicate"
    assert "expected 4 fields" in by_line["5"].message
    assert "bad start time" in by_line["6"].message
    assert "not after start" in by_line["7"].message
    assert "unknown label id: '/m/zzzzzz'" in by_line["8"].message
    assert "not an AudioSet label id" in by_line["9"].message
    assert "bad start time" in by_line["10"].message
    assert by_line["5"].item.startswith("hand.csv:5: toofew12345")


def test_unknown_mids_pass_when_no_vocabulary_is_given() -> None:
    requests, failures = read_audioset_segments(MALFORMED_CSV)
    assert "unknownmid1_0" in {r.clip_id for r in requests}
    assert len(failures) == 6


# -- strong TSV --------------------------------------------------------------------------------


def test_strong_rows_group_into_one_clip_per_segment() -> None:
    requests, failures = read_audioset_strong(STRONG)
    assert failures == []
    assert [r.clip_id for r in requests] == [
        "-QVqh513RxQ_15000", "a_b-Cd_EfGh_30000", "0FMdORf5iGs_0", "zz9yY8xX7wW_120000",
    ]  # fmt: skip
    dog = requests[0]
    assert (dog.source, dog.start_s, dog.end_s) == ("yt:-QVqh513RxQ", 15.0, 25.0)
    assert dog.labels == (BARK, SPEECH)  # union, first appearance order, no repeats
    assert dog.events == (
        LabelEvent(BARK, 0, 2340),
        LabelEvent(SPEECH, 1500, 9120),
        LabelEvent(BARK, 4000, 4870),
    )
    assert requests[1].ytid == "a_b-Cd_EfGh"  # YouTube ids may contain "_"
    assert requests[2].labels == (MEOW, CAR) and len(requests[2].events) == 3
    assert (requests[3].start_s, requests[3].end_s) == (120.0, 130.0)
    assert dog.origin == "strong_excerpt.tsv:2"


def test_strong_and_weak_clip_ids_agree(excerpt: list[ClipRequest]) -> None:
    strong, _ = read_audioset_strong(STRONG)
    weak_ids = {r.clip_id for r in excerpt}
    assert strong[0].clip_id in weak_ids


def test_malformed_strong_rows_become_failures() -> None:
    text = "\n".join(
        [
            "segment_id\tstart_time_seconds\tend_time_seconds\tlabel",
            "okok1234567_10000\t0.000\t1.000\t/m/09x0r",
            "okok1234567_10000\t2.000\t11.000\t/m/04rlf",  # past the 10-s segment
            "nounderscore\t0.000\t1.000\t/m/09x0r",
            "okok1234567_abc\t0.000\t1.000\t/m/09x0r",
            "okok1234567_10000\t3.000\t2.000\t/m/09x0r",
            "okok1234567_10000\t3.000\t4.000",
            "okok1234567_10000\t3.000\t4.000\t/m/zzz",
            "okok1234567_10000\t5.000\t6.000\t/m/04rlf",
        ]
    )
    requests, failures = read_audioset_strong(text, known_labels={SPEECH, MUSIC}, name="s.tsv")
    assert len(requests) == 1
    assert requests[0].labels == (SPEECH, MUSIC)
    assert requests[0].events == (LabelEvent(SPEECH, 0, 1000), LabelEvent(MUSIC, 5000, 6000))
    assert [f.item.split(":")[1] for f in failures] == ["3", "4", "5", "6", "7", "8"]
    assert {f.reason for f in failures} == {"malformed"}
    assert "past the 10000 ms segment" in failures[0].message


def test_strong_framed_present_column_keeps_only_present_events() -> None:
    text = (
        "segment_id\tstart_time_seconds\tend_time_seconds\tlabel\tpresent\n"
        "framed12345_0\t0.000\t0.960\t/m/09x0r\tPRESENT\n"
        "framed12345_0\t0.960\t1.920\t/m/04rlf\tNOT_PRESENT\n"
        "absent12345_0\t0.000\t0.960\t/m/04rlf\tNOT_PRESENT\n"
        "framed12345_0\t0.960\t1.920\t/m/04rlf\tMAYBE\n"
    )
    requests, failures = read_audioset_strong(text)
    assert [(r.clip_id, r.labels) for r in requests] == [("framed12345_0", (SPEECH,))]
    assert [f.reason for f in failures] == ["malformed"]


def test_request_rows_round_trip() -> None:
    strong, _ = read_audioset_strong(STRONG)
    request = strong[0].with_selection((DOG,))
    back = ClipRequest.from_row(request.to_row())
    assert back == request and back.events == request.events
    row = request.to_row() | {"start_s": float("nan"), "end_s": None}  # nulls from Arrow
    assert ClipRequest.from_row(row).start_s is None
    assert ClipRequest.from_row(row).end_s is None


@pytest.mark.parametrize(
    ("text", "ms"), [("30.000", 30000), ("4.5", 4500), ("0.0005", 0), ("0.0015", 2), ("7", 7000)]
)
def test_seconds_to_ms_is_exact(text: str, ms: int) -> None:
    assert seconds_to_ms(text) == ms


@pytest.mark.parametrize("text", ["nan", "inf", "-1", "", "1,5"])
def test_seconds_to_ms_rejects_non_times(text: str) -> None:
    with pytest.raises(ValueError):
        seconds_to_ms(text)


# -- selection ---------------------------------------------------------------------------------


def _carrying(requests: list[ClipRequest], mids: set[str]) -> list[ClipRequest]:
    return [r for r in requests if set(r.labels) & mids]


def test_balanced_selection_fills_the_rarest_labels_up_to_the_cap(excerpt, ontology) -> None:
    available = {mid: len(_carrying(excerpt, {mid})) for mid in (DOG, CAT, SPEECH)}
    assert available[CAT] < available[DOG] < available[SPEECH]  # the excerpt's premise
    selected = select_clips(excerpt, ontology, ["Dog", "Cat", "Speech"], per_label_cap=4, seed=1)
    counts = selection_counts(selected)
    for mid in (DOG, CAT, SPEECH):
        assert counts[mid] >= min(4, available[mid])
    assert len({r.clip_id for r in selected}) == len(selected)
    for r in selected:
        assert r.selected_labels and not r.negative
        assert set(r.selected_labels) == set(r.labels) & {DOG, CAT, SPEECH}
        original = next(x for x in excerpt if x.clip_id == r.clip_id)
        assert r.labels == original.labels  # all original labels are kept


def test_without_a_cap_every_carrying_clip_is_selected(excerpt, ontology) -> None:
    selected = select_clips(excerpt, ontology, [DOG, "cat"])
    assert {r.clip_id for r in selected} == {r.clip_id for r in _carrying(excerpt, {DOG, CAT})}


def test_descendants_roll_up_to_the_chosen_label(excerpt, ontology) -> None:
    bark_only = [r for r in excerpt if BARK in r.labels and DOG not in r.labels]
    assert bark_only
    plain = {r.clip_id for r in select_clips(excerpt, ontology, ["Dog"])}
    assert not plain & {r.clip_id for r in bark_only}
    rolled = select_clips(excerpt, ontology, ["Dog"], include_descendants=True)
    by_id = {r.clip_id: r for r in rolled}
    for r in bark_only:
        assert by_id[r.clip_id].selected_labels == (DOG,)
        assert by_id[r.clip_id].labels == r.labels


def test_negatives_make_the_requested_share(excerpt, ontology) -> None:
    selected = select_clips(excerpt, ontology, ["Cat"], negatives_share=0.5, seed=3)
    negatives = [r for r in selected if r.negative]
    positives = [r for r in selected if not r.negative]
    assert len(positives) == len(_carrying(excerpt, {CAT}))
    assert len(negatives) == len(positives)
    for r in negatives:
        assert r.selected_labels == () and CAT not in r.labels


def test_selection_is_deterministic_for_a_seed_and_independent_of_input_order(
    excerpt, ontology
) -> None:
    args = dict(per_label_cap=3, negatives_share=0.3)
    a = select_clips(excerpt, ontology, ["Speech", "Music"], seed=7, **args)
    shuffled = list(excerpt)
    random.Random(0).shuffle(shuffled)
    b = select_clips(shuffled, ontology, ["Speech", "Music"], seed=7, **args)
    assert a == b
    others = [
        select_clips(excerpt, ontology, ["Speech", "Music"], seed=s, **args) for s in range(5)
    ]
    assert any(o != a for o in others)


def test_unknown_label_is_an_error(excerpt, ontology) -> None:
    with pytest.raises(KeyError, match="Dgo"):
        select_clips(excerpt, ontology, ["Dgo"])
    with pytest.raises(ValueError):
        select_clips(excerpt, ontology, [])


_CLASSES = [DOG, CAT, SPEECH, MUSIC, BARK, "/m/068hy", "/m/0jbk", "/m/07r_k2n"]


@settings(max_examples=60, deadline=None)
@given(
    chosen=st.lists(st.sampled_from(_CLASSES), min_size=1, max_size=4, unique=True),
    cap=st.none() | st.integers(min_value=0, max_value=6),
    share=st.sampled_from([0.0, 0.2, 0.5]),
    descendants=st.booleans(),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_every_chosen_label_gets_min_of_cap_and_available(
    excerpt, ontology, chosen, cap, share, descendants, seed
) -> None:
    selected = select_clips(
        excerpt, ontology, chosen, include_descendants=descendants, per_label_cap=cap,
        negatives_share=share, seed=seed,
    )  # fmt: skip
    matches = {m: ontology.descendants(m) if descendants else {m} for m in chosen}
    counts = selection_counts(selected)
    for mid in chosen:
        available = len(_carrying(excerpt, matches[mid]))
        assert counts.get(mid, 0) >= min(available, cap if cap is not None else available)
    assert len({r.clip_id for r in selected}) == len(selected)
    positives = [r for r in selected if not r.negative]
    for r in positives:
        assert r.selected_labels == tuple(m for m in chosen if set(r.labels) & matches[m])
    for r in selected:
        if r.negative:
            assert not any(set(r.labels) & matches[m] for m in chosen)
    if share == 0.0:
        assert len(positives) == len(selected)
