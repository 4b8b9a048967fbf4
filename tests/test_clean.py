"""dataset clean: folds, suspicion scores, decisions, the cleaned version, and the flipped-label
check (10 % of a clean generated corpus relabelled on purpose: the cleaner must rank the flips
first, and training on the cleaned version must beat training on the noisy one)."""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

from sound_captions.bundle import load_bundle
from sound_captions.clean.apply import (
    DecisionsError,
    apply_decisions,
    decisions_transform,
    read_decisions,
)
from sound_captions.clean.folds import assign_folds, clip_label_sets
from sound_captions.clean.options import CleanConfig
from sound_captions.clean.review import clean_dataset
from sound_captions.clean.suspicion import pool_seconds
from sound_captions.cli import main
from sound_captions.dataset import shards
from sound_captions.dataset.augmentation import together_member, together_members
from sound_captions.dataset.build import BuildOptions, build_dataset
from sound_captions.features import FeatureConfig
from sound_captions.sources.manifest import read_manifest, write_manifest
from sound_captions.testing.media import make_media

CFG = FeatureConfig.preset("64x64x1")  # small maps keep the fold trainings short
NAMES = {"beep": "Beep, bleep", "music": "Music", "noise": "White noise"}
BEEP, MUSIC, NOISE = "/m/02fs_r", "/m/04rlf", "/m/0chx_"


# ------------------------------------------------------------------------------ pure functions


def test_folds_are_stratified_by_label_set_seeded_and_hold_validation_clips():
    clips = {f"a{i}": ("A",) for i in range(30)} | {f"b{i}": ("B",) for i in range(9)} | {f"n{i}": () for i in range(6)}
    folds = assign_folds(clips, 3, 0.15, seed=4)
    assert folds == assign_folds(clips, 3, 0.15, seed=4)
    assert folds != assign_folds(clips, 3, 0.15, seed=5)
    for group in ("a", "b", "n"):
        per_fold = [sum(1 for c, (f, _) in folds.items() if c.startswith(group) and f == k) for k in range(3)]
        assert max(per_fold) - min(per_fold) <= 1, (group, per_fold)
    valid = sum(v for _, v in folds.values())
    assert 0.1 * len(clips) <= valid <= 0.25 * len(clips)


def test_a_clip_probability_pools_its_top_third_of_seconds():
    scores = np.array([[0.9, 0.1], [0.1, 0.1], [0.1, 0.1], [0.1, 0.1], [0.1, 0.1], [0.8, 0.9]], dtype=np.float32)
    np.testing.assert_allclose(pool_seconds(scores), [0.85, 0.5])  # top 2 of 6 seconds


VOCAB = {BEEP: "Beep, bleep", MUSIC: "Music", NOISE: "White noise"}


def test_decisions_name_their_line_for_every_problem():
    clips = {"c1", "c2"}
    ok = read_decisions("\ufeffclip_id,decision,labels\nc1,relabel,music; White  noise\nc2,,\n", VOCAB, clips)
    assert [(d.clip_id, d.decision, d.labels) for d in ok] == [("c1", "relabel", (MUSIC, NOISE))]
    for text, message in [
        ("clip_id,decision\nc9,drop\n", "line 2: clip 'c9' is not in the dataset"),
        ("clip_id,decision\nc1,drop\nc1,keep\n", "line 3: clip 'c1' was already decided on line 2"),
        ("clip_id,decision\nc1,delete\n", "line 2: decision 'delete' is not keep, drop or relabel"),
        ("clip_id,decision,labels\nc1,relabel,Accordion\n", "line 2: 'Accordion' is not a label of the dataset"),
        ("clip,decision\nc1,drop\n", "needs a clip_id column"),
        ("clip_id,decision\nc1,relabel\n", "line 2: relabel needs a labels column"),
        ("clip_id,suspicion\nc1,0.9\n", "no decision column"),
    ]:
        with pytest.raises(DecisionsError, match=message):
            read_decisions(text, VOCAB, clips)
    ranked = "clip_id,suspicion,suggestion\nc1,0.91,relabel\nc2,0.2,keep\n"
    assert [(d.clip_id, d.decision) for d in read_decisions(ranked, VOCAB, clips, drop_above=0.9)] == [("c1", "drop")]
    with pytest.raises(DecisionsError, match="--drop-above needs a suspicion column"):
        read_decisions("clip_id,decision\nc1,drop\n", VOCAB, clips, drop_above=0.5)


def test_relabelling_keeps_per_second_labels_and_drops_stale_together_sequences():
    table = pa.table({
        "clip_id": ["c1", "c1", "c2", "together-x", "together-y"],
        "source": ["a.wav", "a.wav", "b.wav", "together:c1#1+c3", "together:c3+c4"],
        "labels": [[BEEP], [BEEP, NOISE], [MUSIC], [BEEP], [MUSIC]],
    })  # fmt: skip
    decisions = read_decisions("clip_id,decision,labels\nc1,relabel,White noise;Music\nc2,drop,\n", VOCAB, {"c1", "c2"})
    out = decisions_transform(decisions, {"c1": [BEEP, NOISE], "c2": [MUSIC]})(table)
    assert out.column("clip_id").to_pylist() == ["c1", "c1", "together-y"]
    # Beep removed, Music added to every second; Noise stays where it was
    assert out.column("labels").to_pylist() == [[MUSIC], [MUSIC, NOISE], [MUSIC]]


def test_together_members_read_back_clip_ids_with_plus_hash_and_percent():
    ids = ["c+1", "a#b", "50%", "x%2By", "plain"]
    source = "together:" + "+".join([together_member(ids[0], 2), *(together_member(i) for i in ids[1:])])
    assert together_members(source) == set(ids)
    assert together_member("plain") == "plain" and together_member("plain", 3) == "plain#3"  # ordinary ids as before
    table = pa.table({
        "clip_id": ["c+1", "c", "together-x", "together-y"],
        "source": ["a.wav", "b.wav", "together:" + together_member("c+1", 0) + "+" + together_member("d"), "together:" + together_member("c") + "+" + together_member("d")],
        "labels": [[BEEP], [MUSIC], [BEEP], [MUSIC]],
    })  # fmt: skip
    decisions = read_decisions("clip_id,decision\nc+1,drop\n", VOCAB, {"c+1", "c"})
    out = decisions_transform(decisions, {"c+1": [BEEP], "c": [MUSIC]})(table)
    assert out.column("clip_id").to_pylist() == ["c", "together-y"]  # the sequence of c+1 goes, not the one of c


# ------------------------------------------------------------------------- the generated corpus


@pytest.fixture(scope="module")
def clean_corpus(ray_session, tmp_path_factory):
    """60 clips of three kinds (4 s each) and 6 silent negatives: a clean dataset."""
    root = tmp_path_factory.mktemp("clean-corpus")
    rows, seed = [], 500
    for kind, name in NAMES.items():
        for i in range(20):
            seed += 1
            make_media(root / "clips" / f"{kind}{i:02d}.wav", [(kind, 4)], seed=seed)
            rows.append((f"clips/{kind}{i:02d}.wav", None, None, [name]))
    for i in range(6):
        make_media(root / "clips" / f"silence{i}.wav", [("silence", 3)], seed=i)
        rows.append((f"clips/silence{i}.wav", None, None, []))
    write_manifest(rows, str(root / "manifest.csv"))
    requests, failures = read_manifest(str(root / "manifest.csv"))
    data = root / "dataset"
    build_dataset(requests, str(data), BuildOptions(feature_config=CFG, split_fractions=(0.75, 0.1, 0.15), seed=3, target_shard_mb=0.1), source_failures=failures)
    return data


def _flip(data: Path, out: Path, share: float, seed: int) -> dict[str, tuple[str, str]]:
    """A noisy version of ``data``: ``share`` of its labelled train/valid clips get another
    kind's label (made with --apply itself). Returns clip id → (true, given) label."""
    labels = clip_label_sets(str(data), ("train", "valid"))
    labelled = sorted(c for c, v in labels.items() if v)
    rng = random.Random(seed)
    flipped = rng.sample(labelled, max(1, round(share * len(labelled))))
    decisions = out.parent / f"{out.name}-flips.csv"
    changes = {}
    with open(decisions, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["clip_id", "decision", "labels"])
        for clip_id in flipped:
            true = labels[clip_id][0]
            wrong = rng.choice([m for m in VOCAB if m != true])
            writer.writerow([clip_id, "relabel", VOCAB[wrong]])
            changes[clip_id] = (true, wrong)
    apply_decisions(str(data), str(decisions), str(out))
    return changes


NOISY_CLEAN = CleanConfig(folds=3, epochs=12, batch_size=8, splits=("train", "valid"), seed=0)


@pytest.fixture(scope="module")
def noisy(clean_corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("clean-noisy")
    flips = _flip(clean_corpus, root / "noisy", 0.10, seed=11)
    review = root / "review"
    report = clean_dataset(str(root / "noisy"), str(review), NOISY_CLEAN, page_clips=40, progress=lambda _: None)
    return root, flips, report


@pytest.mark.ray
@pytest.mark.slow
def test_flipped_labels_rank_in_the_top_15_percent(noisy):
    root, flips, report = noisy
    ranked = [c.clip_id for c in report.clips]
    top = set(ranked[: int(np.ceil(0.15 * len(ranked)))])
    found = [c for c in flips if c in top]
    assert len(found) >= 0.8 * len(flips), (flips, ranked[:15])
    # the suggestion puts the true label back for the flips it found
    by_id = {c.clip_id: c for c in report.clips}
    restored = [c for c in found if by_id[c].suggested_labels == (flips[c][0],)]
    assert len(restored) >= 0.8 * len(found), [(c, by_id[c].suggestion, by_id[c].suggested_labels) for c in found]
    # the review folder: the ranking, per-second scores, the page, the summary
    with open(root / "review" / "suspicions.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["clip_id"] for r in rows] == ranked
    assert float(rows[0]["suspicion"]) >= float(rows[-1]["suspicion"])
    summary = json.loads((root / "review" / "clean.json").read_text())
    assert summary["clips"] == len(ranked) and summary["config"]["folds"] == 3
    with open(root / "review" / "seconds.csv") as f:
        seconds = list(csv.DictReader(f))
    assert {r["clip_id"] for r in seconds} == {c.clip_id for c in report.clips if c.labels or c.missing}
    page = (root / "review" / "review.html").read_text()
    assert page.count('<section class="clip"') == min(40, len(ranked)) and "data:audio/ogg;base64," in page


@pytest.mark.ray
@pytest.mark.slow
def test_a_rerun_reuses_finished_folds_and_redoes_an_unfinished_one(noisy):
    root, _, report = noisy
    (root / "review" / ".work" / "fold-2" / "scores.parquet").unlink()  # as if killed while scoring
    lines = []
    again = clean_dataset(str(root / "noisy"), str(root / "review"), NOISY_CLEAN, page_clips=40, progress=lines.append)
    assert lines[:2] == [f"fold {k}/3: scores of an earlier run reused" for k in (1, 2)]
    assert lines[2].startswith("fold 3/3: training compact on ") and len(lines) == 3
    assert (root / "review" / ".work" / "fold-2" / "scores.parquet").exists()
    # the retrained fold ranks the same flips first
    assert set(c.clip_id for c in again.clips[:5]) == set(c.clip_id for c in report.clips[:5])


def _test_scores(data: Path, run: Path) -> dict:
    """Train on ``data`` (the clean test split held out) and score that test split."""
    from sound_captions.evaluate import score_dataset
    from sound_captions.metrics import mean_average_precision
    from sound_captions.train import BUNDLE_NAME, TrainConfig, train

    train(TrainConfig(data=str(data), out=str(run), model="compact", epochs=12, batch_size=8, seed=2, patience=0))
    bundle = load_bundle(str(run / BUNDLE_NAME))
    truth, scores, _ = score_dataset(bundle, str(data), split="test")
    p = np.clip(scores, 1e-6, 1 - 1e-6)
    on = scores >= np.array([bundle.thresholds[m] for m in bundle.labels])
    tp, fp, fn = (on & truth).sum(), (on & ~truth).sum(), (~on & truth).sum()
    return {
        "f1": float(2 * tp / max(2 * tp + fp + fn, 1)),
        "map": float(mean_average_precision(truth, scores)),
        "bce": float(-np.mean(truth * np.log(p) + (~truth) * np.log(1 - p))),
    }


@pytest.mark.ray
@pytest.mark.slow
def test_the_cleaned_version_trains_better_and_leaves_the_original_alone(noisy, tmp_path):
    root, flips, report = noisy
    before = {p.name: p.stat().st_mtime_ns for p in (root / "noisy").rglob("*") if p.is_file()}
    cleaned = tmp_path / "cleaned"
    result = CliRunner().invoke(
        main, ["dataset", "clean", str(root / "noisy"), "--apply", str(root / "review" / "suspicions.csv"), "--drop-above", "0.5", "--out", str(cleaned)]
    )
    assert result.exit_code == 0, result.output
    info = shards.load_dataset_info(str(cleaned))
    dropped = {d["clip_id"] for d in info.provenance["dropped"]}
    assert set(flips) <= dropped and len(dropped) <= len(flips) + 2, dropped
    assert info.provenance["from_digest"] == shards.dataset_digest(str(root / "noisy"))
    assert info.build_digest != shards.load_dataset_info(str(root / "noisy")).build_digest
    assert {p.name: p.stat().st_mtime_ns for p in (root / "noisy").rglob("*") if p.is_file()} == before
    kept = clip_label_sets(str(cleaned), ("train", "valid", "test"))
    assert not dropped & set(kept) and sum(info.counts[s]["clips"] for s in ("train", "valid", "test")) == len(kept)
    assert clip_label_sets(str(cleaned), ("test",)) == clip_label_sets(str(root / "noisy"), ("test",))
    # a second --apply into the same folder refuses: the version is never overwritten
    again = CliRunner().invoke(main, ["dataset", "clean", str(root / "noisy"), "--apply", str(root / "review" / "suspicions.csv"), "--drop-above", "0.5", "--out", str(cleaned)])
    assert again.exit_code == 2 and "already holds a dataset" in again.output

    noisy_scores = _test_scores(root / "noisy", tmp_path / "run-noisy")
    clean_scores = _test_scores(cleaned, tmp_path / "run-cleaned")
    assert clean_scores["bce"] < noisy_scores["bce"], (clean_scores, noisy_scores)
    assert clean_scores["f1"] >= noisy_scores["f1"] and clean_scores["map"] >= noisy_scores["map"], (clean_scores, noisy_scores)


def test_command_line_mistakes_are_one_line_and_status_2(tmp_path):
    runner = CliRunner()
    for args, message in [
        (["--drop-above", "0.5"], "--drop-above goes with --apply"),
        (["--folds", "1"], "folds must be at least 2"),
        (["--hparams", "[1"], "Expecting"),
        (["--splits", "train,tset"], "splits must be some of train, valid, test"),
    ]:
        result = runner.invoke(main, ["dataset", "clean", str(tmp_path), "--out", str(tmp_path / "r"), *args])
        assert result.exit_code == 2 and message in result.output, (args, result.output)


def test_without_the_clean_extra_the_command_says_how_to_install_it(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['cleanlab'] = None; sys.modules['cleanlab.multilabel_classification'] = None\n"
        "from sound_captions.cli import main; main(['dataset', 'clean', sys.argv[1], '--out', sys.argv[2]])"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path), str(tmp_path / "r")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "pip install 'sound-captions[clean]'" in proc.stderr and "AGPL-3.0" in proc.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.ray
def test_bad_decisions_write_nothing(clean_corpus, tmp_path):
    bad = tmp_path / "decisions.csv"
    bad.write_text("clip_id,decision,labels\nnot-a-clip,drop,\n")
    result = CliRunner().invoke(main, ["dataset", "clean", str(clean_corpus), "--apply", str(bad), "--out", str(tmp_path / "v2")])
    assert result.exit_code == 2 and "line 2: clip 'not-a-clip' is not in the dataset" in result.output
    latin = tmp_path / "latin1.csv"
    latin.write_bytes("clip_id,decision,labels\nx,relabel,Müsic\n".encode("latin-1"))
    result = CliRunner().invoke(main, ["dataset", "clean", str(clean_corpus), "--apply", str(latin), "--out", str(tmp_path / "v2")])
    assert result.exit_code == 2 and "not UTF-8 text" in result.output
    assert not (tmp_path / "v2").exists()


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.browser
def test_the_review_page_filters_plays_and_its_decisions_apply(noisy, tmp_path):
    from browser_helpers import ARTIFACTS, chromium_browser, open_page, save_screenshot

    root, flips, report = noisy
    top, second = report.clips[0], report.clips[1]
    with chromium_browser() as browser:
        page = open_page(browser, root / "review" / "review.html")
        cards = page.locator("section.clip")
        assert cards.count() == min(40, len(report.clips))
        assert page.locator("section.clip").first.get_attribute("data-clip") == top.clip_id
        # the spectrogram is drawn and the clip's audio loads, about as long as the clip
        assert page.evaluate("() => document.querySelector('img.spec').naturalWidth") > 0
        duration = page.evaluate(
            "() => new Promise((ok, fail) => { const a = document.querySelector('audio'); a.preload = 'auto';"
            " a.addEventListener('loadedmetadata', () => ok(a.duration), {once: true});"
            " a.addEventListener('error', () => fail(String(a.error && a.error.code)), {once: true}); a.load(); })"
        )
        assert abs(duration - top.n_seconds) < 0.2
        # filter by label: only cards with that label (given or probably missing) stay
        page.select_option("#label-filter", MUSIC)
        shown = page.locator("section.clip:not([hidden])")
        labels = shown.evaluate_all("cards => cards.map(c => c.dataset.labels.split('|'))")
        assert labels and all(MUSIC in x for x in labels)
        assert page.inner_text("#shown") == str(len(labels)) and len(labels) < cards.count()
        page.select_option("#label-filter", "")
        # decide: accept the top card's suggestion, drop the second, download decisions.csv
        cards.nth(0).locator(".accept").click()
        cards.nth(1).locator(".decision").select_option("drop")
        assert page.inner_text("#decided") == "2"
        with page.expect_download() as download:
            page.click("#download")
        decisions = tmp_path / "decisions.csv"
        download.value.save_as(decisions)
        save_screenshot(page, ARTIFACTS / "clean-review.png")
        assert page.js_errors == []
    rows = list(csv.DictReader(io.StringIO(decisions.read_text())))
    assert [(r["clip_id"], r["decision"]) for r in rows] == [(top.clip_id, top.suggestion), (second.clip_id, "drop")]
    made = apply_decisions(str(root / "noisy"), str(decisions), str(tmp_path / "reviewed"))
    assert [d["clip_id"] for d in made.provenance["dropped"]] == [second.clip_id]
    if top.suggestion == "relabel":
        assert made.provenance["relabelled"] == [
            {"clip_id": top.clip_id, "from": list(top.labels), "to": list(top.suggested_labels), "suspicion": pytest.approx(top.suspicion, abs=1e-5)}
        ]
        assert clip_label_sets(str(tmp_path / "reviewed"), ("train", "valid"))[top.clip_id] == top.suggested_labels
