"""Build planning without Ray: sources + chosen labels → requests, vocabulary, shard labels."""

from __future__ import annotations

import pytest

from sound_captions.dataset.build import BuildOptions, build_digest, rows_per_shard, training_labels
from sound_captions.dataset.fetch import request_from_row
from sound_captions.dataset.plan import PlanError, plan_build
from sound_captions.features import FeatureConfig
from sound_captions.sources.requests import ClipRequest

BEEP, MUSIC, DOG, BARK = "/m/02fs_r", "/m/04rlf", "/m/0bt9lr", "/m/05tny_"

CSV = """# Segments csv
# num_ytids=5
# YTID, start_seconds, end_seconds, positive_labels
aaa, 0.000, 10.000, "/m/02fs_r"
bbb, 30.000, 40.000, "/m/04rlf,/m/02fs_r"
ccc, 0.000, 10.000, "/m/05tny_"
ddd, 0.000, 10.000, "/m/0chx_"
eee, 0.000, 10.000, "/m/02fs_r"
bad, x, 10.000, "/m/02fs_r"
"""


@pytest.fixture()
def csv(tmp_path):
    path = tmp_path / "segments.csv"
    path.write_text(CSV)
    return str(path)


def test_an_audioset_build_needs_chosen_labels(csv) -> None:
    with pytest.raises(PlanError):
        plan_build(audioset_csvs=[csv])


def test_vocabulary_is_the_chosen_labels_and_shard_labels_are_those_present(csv) -> None:
    plan = plan_build(audioset_csvs=[csv], labels=["Beep, bleep", "Dog"], include_descendants=True, negatives=0.2, seed=1)
    assert plan.vocabulary == {BEEP: "Beep, bleep", DOG: "Dog"}
    by_id = {r.clip_id: r for r in plan.requests}
    assert training_labels(by_id["bbb_30000"]) == (BEEP,)  # Music was not chosen
    assert training_labels(by_id["ccc_0"]) == (DOG,)  # Bark rolls up to the chosen Dog
    negatives = [r for r in plan.requests if r.negative]
    assert len(negatives) == 1 and training_labels(negatives[0]) == ()
    assert [f.reason for f in plan.failures] == ["malformed"]
    assert plan.selection["labels"] == [BEEP, DOG] and plan.selection["label_policy"]


def test_per_label_cap_and_seed_make_a_deterministic_subset(csv) -> None:
    first = plan_build(audioset_csvs=[csv], labels=["Beep, bleep"], per_label_cap=2, seed=5)
    again = plan_build(audioset_csvs=[csv], labels=["Beep, bleep"], per_label_cap=2, seed=5)
    assert [r.clip_id for r in first.requests] == [r.clip_id for r in again.requests]
    assert len(first.requests) == 2


def test_a_clip_listed_by_two_sources_is_kept_once(csv, tmp_path) -> None:
    plan = plan_build(audioset_csvs=[csv, csv], labels=["Beep, bleep"])
    assert len({r.clip_id for r in plan.requests}) == len(plan.requests) == 3
    assert sum(f.reason == "duplicate" for f in plan.failures) == 5


def test_a_manifest_build_without_labels_keeps_its_own_labels() -> None:
    r = ClipRequest("x", "a.wav", None, None, (MUSIC, BEEP), "m")
    assert training_labels(r) == (MUSIC, BEEP)


def test_rows_per_shard_follows_the_target_size() -> None:
    cfg = FeatureConfig()
    assert rows_per_shard(cfg, 128) == 128 * (1 << 20) // (64 * 64 * 2 + 256)
    assert rows_per_shard(FeatureConfig.preset("256x256x3"), 128) < rows_per_shard(cfg, 128)
    assert rows_per_shard(cfg, 0.001) == 1


def test_build_digest_changes_with_what_decides_the_content() -> None:
    reqs = [ClipRequest("a_0", "yt:a", 0.0, 10.0, (BEEP,), "t"), ClipRequest("b_0", "yt:b", 0.0, 10.0, (MUSIC,), "t")]
    splits = {"a_0": "train", "b_0": "test"}
    vocab = {BEEP: "Beep", MUSIC: "Music"}
    base = build_digest(reqs, splits, vocab, BuildOptions())
    assert base == build_digest(list(reversed(reqs)), splits, vocab, BuildOptions(target_shard_mb=1))
    assert base != build_digest(reqs, {"a_0": "train", "b_0": "train"}, vocab, BuildOptions())
    assert base != build_digest(reqs, splits, vocab, BuildOptions(feature_config=FeatureConfig.preset("linear-128x128x1")))
    assert base != build_digest(reqs[:1], splits, vocab, BuildOptions())


def test_build_rows_become_requests_with_their_labels_and_open_ends() -> None:
    r = request_from_row({"clip_id": "a_0", "source": "yt:a", "start_s": float("nan"), "end_s": 3.0, "labels": f"{BEEP}|{MUSIC}"})
    assert r.start_s is None and r.end_s == 3.0 and r.labels == (BEEP, MUSIC) and r.ytid == "a"
