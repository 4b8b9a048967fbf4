"""Train-split augmentation in the dataset build: copies, overlapping windows and stitched
"together" sequences, through the real Ray Data pipeline on generated media (no downloads)."""

from __future__ import annotations

import itertools
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from sound_captions.augment import WaveAugmentConfig
from sound_captions.dataset import shards
from sound_captions.dataset.augmentation import (
    BuildAugmentConfig,
    augment_config_from_options,
    clip_versions,
)
from sound_captions.dataset.build import BuildOptions, build_dataset
from sound_captions.dataset.stages import add_spectrograms, decode_windows
from sound_captions.features import FeatureConfig
from sound_captions.ontology import Ontology
from sound_captions.sources.manifest import read_manifest
from sound_captions.testing.media import KIND_LABELS, make_media

KINDS = ("beep", "music", "noise")
CLIPS_PER_KIND = 3  # stratified 0.8/0.1/0.1 split: per kind 1 train, 1 valid, 1 test clip
SECONDS = 3


@pytest.fixture(scope="module")
def requests(tmp_path_factory):
    folder = tmp_path_factory.mktemp("augment-media")
    lines = ["source,start_s,end_s,labels"]
    for k, kind in enumerate(KINDS):
        for i in range(CLIPS_PER_KIND):
            make_media(folder / f"{kind}{i}.wav", [(kind, SECONDS)], seed=10 * k + i)
            lines.append(f"{kind}{i}.wav,,,{KIND_LABELS[kind]}")
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n")
    reqs, failures = read_manifest(str(folder / "manifest.csv"), Ontology.load())
    assert not failures and len(reqs) == len(KINDS) * CLIPS_PER_KIND
    return reqs


def rows_of(root: Path) -> list[dict]:
    info = shards.load_dataset_info(str(root))
    out = []
    for uri in shards.shard_uris(str(root), info):
        table = shards.read_table(uri)
        spec = shards.spectrograms(table)
        for i, row in enumerate(table.drop_columns(["spectrogram"]).to_pylist()):
            row["spectrogram"] = spec[i]
            out.append(row)
    return out


def by_split(rows: list[dict]) -> dict[str, list[dict]]:
    out = defaultdict(list)
    for r in rows:
        out[r["split"]].append(r)
    return out


def keyed(rows: list[dict]) -> dict[tuple, np.ndarray]:
    return {(r["clip_id"], r["augment"], r["start_s"]): r["spectrogram"] for r in rows}


def build(requests, root: Path, augment: BuildAugmentConfig, **options) -> Path:
    build_dataset(requests, str(root), BuildOptions(seed=0, augment=augment, **options))
    return root


@pytest.fixture(scope="module")
def builds(ray_session, requests, tmp_path_factory):
    base = tmp_path_factory.mktemp("augment-builds")
    copies = BuildAugmentConfig(wave=WaveAugmentConfig(copies=2), seed=0)
    mixed = BuildAugmentConfig(wave=WaveAugmentConfig(overlap_hop_s=0.5), together=2, together_clips=3, together_seconds=(1, 2), seed=0)
    return {
        "plain": build(requests, base / "plain", BuildAugmentConfig()),
        "copies": build(requests, base / "copies", copies),
        # one block holds every request, so all train clips are partners of one another
        "mixed": build(requests, base / "mixed", mixed, items_per_block=16),
    }, {"copies": copies, "mixed": mixed}


@pytest.mark.ray
def test_copies_triple_the_train_windows_and_leave_valid_and_test_alone(builds) -> None:
    roots, _ = builds
    plain, copies = by_split(rows_of(roots["plain"])), by_split(rows_of(roots["copies"]))
    assert len(plain["train"]) == len(KINDS) * SECONDS  # one train clip per kind
    assert len(copies["train"]) == 3 * len(plain["train"])
    tags = defaultdict(int)
    for r in copies["train"]:
        tags[r["augment"]] += 1
    assert tags == {"original": 9, "copy-1": 9, "copy-2": 9}
    for split in ("valid", "test"):
        a, b = keyed(plain[split]), keyed(copies[split])
        assert a.keys() == b.keys() and all(k[1] == "original" for k in b)
        assert all(np.array_equal(a[k], b[k]) for k in a)
    # the originals of the train clips are the un-augmented build's rows, bit for bit
    originals = {k: v for k, v in keyed(copies["train"]).items() if k[1] == "original"}
    reference = keyed(plain["train"])
    assert originals.keys() == reference.keys() and all(np.array_equal(originals[k], reference[k]) for k in reference)


@pytest.mark.ray
def test_no_clip_lands_in_two_splits(builds) -> None:
    roots, _ = builds
    for name in ("copies", "mixed"):
        splits = defaultdict(set)
        for r in rows_of(roots[name]):
            splits[r["clip_id"]].add(r["split"])
        assert all(len(s) == 1 for s in splits.values()), name
        together = {next(iter(s)) for c, s in splits.items() if c.startswith("together-")}
        assert together == ({"train"} if name == "mixed" else set())


@pytest.mark.ray
def test_copies_differ_from_the_original_and_repeat_with_the_same_seed(builds, requests) -> None:
    roots, configs = builds
    rows = rows_of(roots["copies"])
    first = keyed(rows)
    # the same seed gives the same copies in another process (here: this one, not a Ray worker)
    cfg = shards.load_dataset_info(str(roots["copies"])).feature_config
    by_id = {r.clip_id: r for r in requests}
    train_ids = sorted({r["clip_id"] for r in rows if r["split"] == "train"})
    for clip_id in train_ids:
        r = by_id[clip_id]
        request = {"clip_id": r.clip_id, "source": r.source, "start_s": np.nan, "end_s": np.nan, "labels": "|".join(r.labels), "split": "train"}
        again = add_spectrograms(decode_windows(request, cfg, augment=configs["copies"]), cfg)
        assert len(again["clip_id"]) == 3 * SECONDS
        for tag, start_s, spec in zip(again["augment"], again["start_s"], again["spectrogram"], strict=True):
            stored = first[(clip_id, tag, start_s)].astype(np.float32)
            assert np.abs(stored - spec.astype(np.float32)).max() < 0.01, (clip_id, tag, start_s)
    for (clip_id, tag, start_s), spec in first.items():
        if tag.startswith("copy-"):
            original = first[(clip_id, "original", start_s)].astype(np.float32)
            assert np.abs(spec.astype(np.float32) - original).mean() > 0.05, (clip_id, tag, start_s)
    one, two = (np.stack([v for k, v in sorted(first.items()) if k[1] == t]) for t in ("copy-1", "copy-2"))
    assert not np.array_equal(one, two)  # each copy draws its own gain, shift and noise


@pytest.mark.ray
def test_overlap_doubles_the_train_windows_with_half_second_starts(builds) -> None:
    roots, _ = builds
    plain, mixed = by_split(rows_of(roots["plain"])), by_split(rows_of(roots["mixed"]))
    clip_rows = [r for r in mixed["train"] if r["augment"] != "together"]
    assert len(clip_rows) == 2 * len(plain["train"])
    overlap = [r for r in clip_rows if r["augment"] == "overlap"]
    assert len(overlap) == len(plain["train"])
    assert {round(r["start_s"] % 1.0, 6) for r in overlap} == {0.5}
    assert all(r["second"] == int(r["start_s"]) for r in clip_rows)
    for split in ("valid", "test"):
        assert keyed(plain[split]).keys() == keyed(mixed[split]).keys()


@pytest.mark.ray
def test_together_sequences_carry_per_second_labels_that_change_at_the_stitch(builds) -> None:
    roots, _ = builds
    rows = rows_of(roots["mixed"])
    originals = [r for r in rows if r["split"] == "train" and r["augment"] == "original"]
    sequences = defaultdict(list)
    for r in rows:
        if r["augment"] == "together":
            assert r["clip_id"].startswith("together-") and r["split"] == "train"
            sequences[r["clip_id"]].append(r)
    assert len(sequences) == 2 * len(KINDS)  # every train clip leads two
    for seq in sequences.values():
        seq.sort(key=lambda r: r["second"])
        assert [r["second"] for r in seq] == list(range(len(seq)))
        labels = [tuple(r["labels"]) for r in seq]
        assert all(len(lab) == 1 for lab in labels)
        changes = sum(a != b for a, b in zip(labels, labels[1:], strict=False))
        assert changes == len(KINDS) - 1  # three clips of three classes: two transitions
        runs = [len(list(g)) for _, g in itertools.groupby(labels)]
        assert all(1 <= n <= 2 for n in runs)
        for r in seq:  # every stitched second is one whole second of a train clip of that label
            assert any(o["labels"] == r["labels"] and np.array_equal(o["spectrogram"], r["spectrogram"]) for o in originals)


@pytest.mark.ray
def test_dataset_json_records_the_augmentation_and_counts_it(builds) -> None:
    roots, configs = builds
    plain, copies, mixed = (shards.load_dataset_info(str(roots[n])) for n in ("plain", "copies", "mixed"))
    assert plain.augmentation == {} and copies.augmentation == configs["copies"].to_dict()
    assert BuildAugmentConfig.from_dict(mixed.augmentation) == configs["mixed"]
    assert copies.augmentation["wave"]["copies"] == 2 and copies.augmentation["seed"] == 0
    assert len({plain.build_digest, copies.build_digest, mixed.build_digest}) == 3
    assert copies.counts["train"]["augment"] == {"original": 9, "copy-1": 9, "copy-2": 9}
    assert copies.counts["train"]["windows"] == 27 and copies.counts["train"]["clips"] == 3
    assert copies.counts["valid"]["augment"] == {"original": 9} and copies.obtained == plain.obtained == 9
    together = mixed.counts["train"]["together"]
    assert together["sequences"] == 6 and together["windows"] == mixed.counts["train"]["augment"]["together"]
    beep = KIND_LABELS["beep"]
    # per-label windows follow the per-second labels of the sequences
    assert mixed.counts["train"]["labels"][beep]["windows"] > 2 * SECONDS and mixed.counts["train"]["labels"][beep]["clips"] == 1


@pytest.mark.ray
def test_a_rerun_with_other_augmentation_is_another_build(builds, requests) -> None:
    from sound_captions.dataset.build import DatasetExistsError

    roots, _ = builds
    with pytest.raises(DatasetExistsError):
        build(requests, roots["copies"], BuildAugmentConfig(wave=WaveAugmentConfig(copies=1), seed=0))
    report = build_dataset(requests, str(roots["copies"]), BuildOptions(seed=0, augment=BuildAugmentConfig(wave=WaveAugmentConfig(copies=2), seed=0)))
    assert report.skipped


# -- pure parts -----------------------------------------------------------------------------


def test_clip_versions_without_augmentation_is_the_one_second_grid() -> None:
    cfg = FeatureConfig()
    samples = np.random.default_rng(0).standard_normal(int(2.6 * cfg.sample_rate_hz)).astype(np.float32)
    (windows, starts, tags), = clip_versions(samples, "c", cfg, None)
    assert windows.shape == (3, cfg.window_samples) and starts.tolist() == [0, 16000, 32000] and set(tags) == {"original"}
    aug = BuildAugmentConfig(wave=WaveAugmentConfig(copies=1, overlap_hop_s=0.5))
    versions = clip_versions(samples, "c", cfg, aug)
    assert [v[2] for v in versions][0] == ["original", "overlap", "original", "overlap", "original"]
    assert versions[1][2] == ["copy-1"] * 5


def test_cli_options_make_the_config_and_bad_ones_are_usage_errors(tmp_path) -> None:
    cfg = augment_config_from_options(copies=2, gain_db="-3,3", noise_snr_db="none", shift_s=0.1, overlap_hop_s=0.5, together=1, seed=4)
    assert cfg.wave == WaveAugmentConfig(copies=2, gain_db=(-3.0, 3.0), noise_snr_db=None, max_shift_s=0.1, overlap_hop_s=0.5)
    assert cfg.together == 1 and cfg.seed == 4 and cfg.enabled
    assert not augment_config_from_options().enabled
    with pytest.raises(ValueError, match="gain"):
        augment_config_from_options(gain_db="loud")
    from sound_captions.cli import main

    manifest = tmp_path / "m.csv"
    manifest.write_text("source,start_s,end_s,labels\nx.wav,,,/m/04rlf\n")
    result = CliRunner().invoke(main, ["dataset", "build", "--out", str(tmp_path / "ds"), "--manifest", str(manifest), "--augment-gain-db", "6,-6"])
    assert result.exit_code == 2 and "gain_db" in result.output
