"""One per-second label contract in the dataset build (issue 12): a window's labels come from
the events that cover it (overlap of at least ``event_min_overlap_s``, default 0.5 s), whether
the events come from an AudioSet strong-label TSV or an events manifest; seconds outside every
event are negatives; clip-level sources label every window as before."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from sound_captions.cli import main
from sound_captions.dataset import shards
from sound_captions.dataset.build import training_events
from sound_captions.dataset.stages import decode_windows, join_events, join_labels, second_labels
from sound_captions.features import FeatureConfig
from sound_captions.ontology import Ontology
from sound_captions.sources.audioset import read_audioset_strong
from sound_captions.sources.events import parse_events
from sound_captions.testing.media import KIND_LABELS, make_media

BEEP, MUSIC, NOISE = KIND_LABELS["beep"], KIND_LABELS["music"], KIND_LABELS["noise"]
CFG = FeatureConfig(height=16, width=16)


def test_an_event_labels_the_seconds_it_covers_by_at_least_the_minimum_overlap():
    events = [(BEEP, 3000, 6000), (MUSIC, 6300, 7800), (NOISE, 8600, 9200)]
    labels = [second_labels(events, float(k), 0.5, [BEEP, MUSIC, NOISE]) for k in range(10)]
    assert labels == [[], [], [], [BEEP], [BEEP], [BEEP], [MUSIC], [MUSIC], [], []]  # 0.4 s and 0.2 s of noise: not enough
    assert second_labels(events, 8.0, 0.4, [NOISE]) == [NOISE]  # the share is a setting
    assert second_labels(events, 2.5, 0.5, [BEEP]) == [BEEP]  # an overlapping window (hop < 1 s)


def test_a_strong_tsv_event_over_seconds_3_to_5_of_a_10_s_clip_labels_exactly_those_windows(tmp_path):
    ontology = Ontology.load()
    tsv = "segment_id\tstart_time_seconds\tend_time_seconds\tlabel\n" f"abcdefghijk_30000\t3.0\t6.0\t{BEEP}\n"
    (request,), failures = read_audioset_strong(tsv)
    assert failures == []
    media = tmp_path / "segment.mp4"
    make_media(media, [("noise", 3), ("beep", 3), ("noise", 4)], seed=1)
    row = {
        "clip_id": request.clip_id, "source": request.source, "start_s": request.start_s, "end_s": request.end_s,
        "labels": join_labels(request.labels), "split": "train", "events": join_events(training_events(request, ontology)),
    }  # fmt: skip
    out = decode_windows(row, CFG, media=str(media), offset_s=0.0)
    assert [list(x.split("|")) if x else [] for x in out["labels"]] == [[], [], [], [BEEP], [BEEP], [BEEP], [], [], [], []]
    # the same clip from a clip-level list: every window carries the clip's labels, as before
    out = decode_windows({**row, "events": ""}, CFG, media=str(media), offset_s=0.0)
    assert set(out["labels"]) == {BEEP}


def test_events_of_a_descendant_label_its_chosen_ancestor():
    ontology = Ontology.load()
    text = f"source,onset_s,offset_s,label\nv.mp4,1,2,Bark\nv.mp4,4,5,Meow\nv.mp4,6,7,{MUSIC}\n"
    requests, failures = parse_events(text, ontology, base="/lib")
    assert failures == []
    from sound_captions.sources.select import select_clips

    (chosen,) = select_clips(requests, ontology, ["Dog"], include_descendants=True)
    assert training_events(chosen, ontology) == [(ontology.resolve("Dog"), 1000, 2000)]  # a bark is a dog; meow and music are not chosen


def test_events_manifest_rows_are_checked_one_by_one():
    ontology = Ontology.load()
    text = (
        "source,onset_s,offset_s,label\n"
        "a.mp4,0,1.5,Applause\n"
        "a.mp4,3,2,Applause\n"  # ends before it starts
        "a.mp4,1,2,No such sound\n"
        "b.mp4,1,2\n"
        "b.mp4,,2,Applause\n"
        "b.mp4,5,6.25,Music\n"
    )
    requests, failures = parse_events(text, ontology, base="/lib", origin="e.csv")
    assert {f.item: f.reason for f in failures} == {"e.csv:3": "malformed", "e.csv:4": "unknown_label", "e.csv:5": "malformed", "e.csv:6": "malformed"}
    by_source = {r.source: r for r in requests}
    assert set(by_source) == {"/lib/a.mp4", "/lib/b.mp4"}
    assert [(e.onset_ms, e.offset_ms) for e in by_source["/lib/b.mp4"].events] == [(5000, 6250)]
    assert by_source["/lib/a.mp4"].start_s is None and by_source["/lib/a.mp4"].end_s is None  # the whole medium


@pytest.mark.ray
def test_dataset_build_with_an_events_manifest_labels_seconds(ray_session, tmp_path):
    lib = tmp_path / "lib"
    make_media(lib / "talk.mp4", [("silence", 2), ("beep", 3), ("noise", 2), ("music", 3)], seed=5)
    make_media(lib / "other.mp4", [("music", 4), ("beep", 2)], seed=6)
    (lib / "events.csv").write_text(
        "source,onset_s,offset_s,label\n"
        f"talk.mp4,2.0,5.0,{BEEP}\ntalk.mp4,7.0,10.0,Music\nother.mp4,0,4.4,Music\nother.mp4,4.4,6,{BEEP}\nother.mp4,1,2,nonsense\n"
    )
    out = tmp_path / "ds"
    result = CliRunner().invoke(main, ["dataset", "build", "--events", str(lib / "events.csv"), "--out", str(out), "--features", "16x16x1", "--split", "1,0,0", "--no-progress"])
    assert result.exit_code == 0, result.output
    info = shards.load_dataset_info(str(out))
    assert info.labels_per_second == {"min_overlap_s": 0.5, "clips": 2}
    assert json.loads((out / "dataset.json").read_text())["labels_per_second"]["min_overlap_s"] == 0.5
    rows = {}
    for uri in shards.shard_uris(str(out), info):
        table = shards.read_table(uri)
        for source, second, labels in zip(table.column("source").to_pylist(), table.column("second").to_pylist(), table.column("labels").to_pylist(), strict=True):
            rows[(source.rsplit("/", 1)[-1], second)] = labels
    talk = [rows[("talk.mp4", k)] for k in range(10)]
    assert talk == [[], [], [BEEP], [BEEP], [BEEP], [], [], [MUSIC], [MUSIC], [MUSIC]]
    other = [rows[("other.mp4", k)] for k in range(6)]
    assert other == [[MUSIC], [MUSIC], [MUSIC], [MUSIC], [BEEP], [BEEP]]  # second 4: 0.4 s of music, 0.6 s of beep
    assert info.counts["train"]["labels"][BEEP]["windows"] == 5 and info.counts["train"]["labels"][MUSIC]["windows"] == 7
    assert info.failure_reasons == {"unknown_label": 1}


def test_a_clip_in_a_segment_list_and_a_strong_tsv_keeps_its_event_times(tmp_path):
    weak = tmp_path / "balanced.csv"
    weak.write_text(f'# Segments csv\n# num_ytids=1\n# YTID, start_seconds, end_seconds, positive_labels\nabcdefghijk, 30.000, 40.000, "{BEEP}"\n')
    strong = tmp_path / "strong.tsv"
    strong.write_text(f"segment_id\tstart_time_seconds\tend_time_seconds\tlabel\nabcdefghijk_30000\t3.0\t6.0\t{BEEP}\n")
    from sound_captions.dataset.plan import plan_build

    plan = plan_build(audioset_csvs=[str(weak)], audioset_strong=[str(strong)], labels=[BEEP])
    (request,) = plan.requests
    assert [(e.onset_ms, e.offset_ms) for e in request.events] == [(3000, 6000)]
    assert [f.reason for f in plan.failures] == ["duplicate"]


def test_together_sequences_keep_the_per_second_labels_of_clips_with_event_times(tmp_path):
    """A clip with event times joins the "together" pool as one member per stretch of one label
    set (its silent stretch too, a negative), so each stitched second keeps its own labels."""
    from sound_captions.dataset.augmentation import BuildAugmentConfig
    from sound_captions.dataset.stages import concat_batches, together_stage

    make_media(tmp_path / "a.mp4", [("beep", 2), ("silence", 2), ("music", 2)], seed=11)
    make_media(tmp_path / "b.mp4", [("noise", 3)], seed=12)
    rows = [
        {"clip_id": "a", "source": str(tmp_path / "a.mp4"), "start_s": None, "end_s": None, "labels": join_labels([BEEP, MUSIC]),
         "split": "train", "events": join_events([(BEEP, 0, 2000), (MUSIC, 4000, 6000)])},
        {"clip_id": "b", "source": str(tmp_path / "b.mp4"), "start_s": None, "end_s": None, "labels": join_labels([NOISE]), "split": "train", "events": ""},
    ]  # fmt: skip
    batch = concat_batches([decode_windows(r, CFG) for r in rows])
    aug = BuildAugmentConfig(together=3, together_clips=3, together_seconds=(1, 2), seed=0)
    out = together_stage({k: v.copy() for k, v in batch.items()}, CFG.to_dict(), aug.to_dict())
    originals = {(tuple(batch["window"][i].tolist())): batch["labels"][i] for i in range(len(batch["clip_id"]))}
    stitched = [i for i in range(len(out["clip_id"])) if out["augment"][i] == "together"]
    members = {m for i in stitched for m in str(out["source"][i]).removeprefix("together:").split("+")}
    assert {"a#0", "a#1", "a#2", "b"} <= members  # a's beep, silent and music stretches, and b
    assert all(out["labels"][i] == originals[tuple(out["window"][i].tolist())] for i in stitched)  # each second's own labels
    assert {out["labels"][i] for i in stitched} == {BEEP, "", MUSIC, NOISE}


def test_a_long_clip_gives_at_most_a_few_together_members(tmp_path):
    """A subtitled film has hundreds of stretches; it joins the pool with its longest few."""
    from sound_captions.dataset.augmentation import BuildAugmentConfig
    from sound_captions.dataset.stages import MAX_TOGETHER_MEMBERS, concat_batches, together_stage

    segments = [("beep" if k % 2 == 0 else "silence", 1 + (k % 3)) for k in range(14)]
    make_media(tmp_path / "film.mp4", segments, seed=13)
    make_media(tmp_path / "b.mp4", [("noise", 3)], seed=14)
    events, t = [], 0
    for kind, seconds in segments:
        if kind == "beep":
            events.append((BEEP, t * 1000, (t + seconds) * 1000))
        t += seconds
    rows = [
        {"clip_id": "film", "source": str(tmp_path / "film.mp4"), "start_s": None, "end_s": None, "labels": join_labels([BEEP]),
         "split": "train", "events": join_events(events)},
        {"clip_id": "b", "source": str(tmp_path / "b.mp4"), "start_s": None, "end_s": None, "labels": join_labels([NOISE]), "split": "train", "events": ""},
    ]  # fmt: skip
    batch = concat_batches([decode_windows(r, CFG) for r in rows])
    aug = BuildAugmentConfig(together=1, together_clips=2, together_seconds=(1, 1), seed=0)
    out = together_stage(batch, CFG.to_dict(), aug.to_dict())
    leads = {str(s).removeprefix("together:").split("+")[0] for s, tag in zip(out["source"], out["augment"], strict=True) if tag == "together"}
    film = {m for m in leads if m.startswith("film#")}
    assert len(film) == MAX_TOGETHER_MEMBERS < 14  # 14 stretches, the longest 8 take part
