"""Distillation (train --teacher): label mapping, the loss, and a student that learns from a
teacher alone on an unlabelled folder of generated media and captions nearly as well."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch

from sound_captions.audio import decode_audio
from sound_captions.bundle import load_bundle
from sound_captions.caption.pipeline import CaptionOptions, caption_library
from sound_captions.dataset import shards
from sound_captions.dataset.build import BuildOptions, build_dataset
from sound_captions.demo import make_test_videos, score_captions
from sound_captions.distill import DISTILL_DIR, DistillationError, map_labels, prepare_distillation
from sound_captions.features import FeatureConfig, compute_features
from sound_captions.ontology import Ontology
from sound_captions.sources.manifest import read_manifest, write_manifest
from sound_captions.testing.bundles import train_tiny_bundle
from sound_captions.testing.media import KIND_LABELS, make_corrupt, make_media
from sound_captions.train import BUNDLE_NAME, TrainConfig, train
from sound_captions.train.loop import distillation_loss

MUSIC, PIANO, GUITAR, DOG = "/m/04rlf", "/m/05r5c", "/m/0342h", "/m/0bt9lr"
CFG = FeatureConfig.preset("64x64x1")  # small maps keep the two trainings short
TEACHER_HPARAMS = {"filters": [16, 32, 64, 64], "conv_dropout": 0.0, "head_units": 64, "head_dropout": 0.0}
STUDENT_HPARAMS = {"filters": [8, 16, 16, 32], "head_units": 16}


def test_student_labels_come_from_the_same_label_or_the_ones_below_it():
    assert Ontology.load().resolve("Piano") == PIANO
    mapping = map_labels([MUSIC, DOG, "/m/0chx_"], [PIANO, GUITAR, DOG])
    assert mapping.sources == ((0, 1), (2,), ())
    assert mapping.mask.tolist() == [True, True, False]
    teacher = np.array([[0.2, 0.7, 0.1], [0.9, 0.0, 0.4]], dtype=np.float32)
    np.testing.assert_array_equal(mapping.apply(teacher), np.array([[0.7, 0.1, 0.0], [0.9, 0.4, 0.0]], dtype=np.float32))
    assert mapping.summary([PIANO, GUITAR, DOG]) == {"mapped": {MUSIC: [PIANO, GUITAR], DOG: [DOG]}, "unmapped": ["/m/0chx_"]}


def test_distillation_loss_by_hand():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 1.0, -2.0], [1.0, 1.0, 1.0]])
    y = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    t = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.8, 0.3], [0.5, 0.5, 0.5]])
    unlabelled = torch.tensor([[0.0], [0.0], [1.0]])  # the third row has no labels
    mask = torch.tensor([True, True, False])  # the teacher knows the first two labels

    def bce(z, target):
        p = 1 / (1 + np.exp(-z))
        return -(target * np.log(p) + (1 - target) * np.log(1 - p))

    z, yy, tt = logits.numpy(), y.numpy(), t.numpy()
    label_term = bce(z[:2], yy[:2]).mean()  # labelled rows only
    distill_term = bce(z[:, :2], tt[:, :2]).mean()  # every row, teacher columns only
    got = distillation_loss(logits, y, t, unlabelled, mask, pos_weight=None, label_weight=0.1, distill_weight=0.9)
    assert float(got) == pytest.approx(0.1 * label_term + 0.9 * distill_term, rel=1e-6)
    only_teacher = distillation_loss(logits, y, t, torch.ones(3, 1), mask, pos_weight=None, label_weight=0.1, distill_weight=0.9)
    assert float(only_teacher) == pytest.approx(0.9 * distill_term, rel=1e-6)


def test_targets_of_a_group_without_train_rows():
    """A clip of the valid split (a context student's group) or a block without train rows."""
    from sound_captions.train.data import to_context_batch, to_training_batch

    n, labels = 3, list(KIND_LABELS.values())
    batch = {
        "second": np.arange(n), "labels": np.array([[labels[0]]] * n, dtype=object), "split": np.array(["valid"] * n),
        "spectrogram": np.zeros((n, *CFG.shape), np.float16), "teacher": np.full((n, len(labels)), 0.5, np.float32),
        "labelled": np.ones(n, bool), "clip_id": np.array(["c"] * n), "start_s": np.arange(n, dtype=float),
        "augment": np.array(["original"] * n),
    }
    plain = to_training_batch(batch, labels, "train")
    assert plain["t"].shape == (0, len(labels)) and plain["u"].shape == (0, 1)
    grouped = to_context_batch(batch, labels, "train", CFG.to_dict(), 1)
    assert grouped["t"].shape == (0, len(labels)) and grouped["x"].shape[0] == 0
    batch["split"] = np.array(["train", "valid", "train"])
    batch["labelled"] = np.array([True, True, False])
    both = to_training_batch(batch, labels, "train")
    assert both["t"].shape == (2, len(labels)) and both["u"][:, 0].tolist() == [0.0, 1.0]


# ------------------------------------------------------------------ teacher → student, end to end


@pytest.fixture(scope="module")
def corpus(ray_session, tmp_path_factory):
    """A labelled dataset (teacher's), the same with no train rows (student's: its valid split
    only), an unlabelled folder (other clips, a corrupt file among them) and held-out videos."""
    root = tmp_path_factory.mktemp("distill")
    names = {m: Ontology.load().name(m) for m in KIND_LABELS.values()}
    rows, seed = [], 500
    for kind, mid in KIND_LABELS.items():
        for i in range(5):
            seed += 1
            make_media(root / "clips" / f"{kind}{i}.wav", [(kind, 4)], seed=seed)
            rows.append((f"clips/{kind}{i}.wav", None, None, [names[mid]]))
    for i in range(3):
        make_media(root / "clips" / f"silence{i}.wav", [("silence", 3)], seed=i)
        rows.append((f"clips/silence{i}.wav", None, None, []))
    write_manifest(rows, str(root / "manifest.csv"))
    requests, failures = read_manifest(str(root / "manifest.csv"))
    build_dataset(requests, str(root / "labelled"), BuildOptions(feature_config=CFG, split_fractions=(0.6, 0.4, 0.0), seed=1), source_failures=failures)

    info = shards.load_dataset_info(str(root / "labelled"))  # the student's: the valid rows alone
    kept = []
    for k, uri in enumerate(shards.shard_uris(str(root / "labelled"), info)):
        table = shards.read_table(uri)
        table = table.filter(pc.equal(table.column("split"), "valid"))
        if table.num_rows:
            rel = f"shards/valid-{k:04d}.parquet"
            shards.write_table(table, str(root / "valid-only" / rel))
            kept.append(rel)
    shards.write_dataset_info(str(root / "valid-only"), shards.DatasetInfo(feature_config=CFG, vocabulary=dict(info.vocabulary), shards=kept, counts=info.counts))

    kinds = [*KIND_LABELS, "silence"]
    for i in range(16):  # the library's own media: kinds one after another, no labels
        a, b = kinds[i % 4], kinds[(i + 1 + i // 4) % 4]
        make_media(root / "unlabelled" / f"u{i:02d}.mp4", [(a, 3), (b, 3)], seed=900 + i)
    make_corrupt(root / "unlabelled" / "broken.mp4", seed=3)
    truth = make_test_videos(str(root / "videos"), seed=4242)
    return root, truth


def _caption_f1(root, name: str, bundle_uri: str, truth) -> float:
    caption_library([str(root / "videos")], CaptionOptions(out=str(root / name), model=bundle_uri, force=True))
    bundle = load_bundle(bundle_uri)
    return float(score_captions(str(root / name), truth, bundle.caption_text, bundle.labels)["overall"]["f_measure"])


@pytest.mark.ray
@pytest.mark.slow
def test_student_taught_on_unlabelled_media_captions_nearly_as_well_as_its_teacher(corpus, tmp_path):
    root, truth = corpus
    # the teacher: a wider CNN trained briefly (plain torch) on other generated clips
    teacher_uri = str(tmp_path / "teacher.bundle")
    teacher = train_tiny_bundle(teacher_uri, seed=3, epochs=40, cfg=CFG, hparams=TEACHER_HPARAMS)

    student_cfg = TrainConfig(
        data=str(root / "valid-only"), out=str(tmp_path / "student"), model="compact", hparams=STUDENT_HPARAMS,
        epochs=8, batch_size=16, seed=0, patience=0, max_failures=0, teacher=teacher_uri, unlabelled=[str(root / "unlabelled")],
    )
    student = train(student_cfg, name="student")
    distilled = student.training["distillation"]
    assert distilled["teacher_digest"] == teacher.digest()
    assert distilled["dataset_rows"] == 0  # the student's dataset has no labelled train row
    assert distilled["unlabelled_media"] == 16 and distilled["unlabelled_rows"] == 16 * 6 and distilled["unlabelled_rows"] == 16 * 6
    assert distilled["unlabelled_failed"] == 1  # broken.mp4: recorded, not fatal
    failures = pq.read_table(tmp_path / "student" / DISTILL_DIR / "failures.parquet").to_pylist()
    assert [f["source"].endswith("broken.mp4") for f in failures] == [True]
    assert set(distilled["mapped"]) == set(student.labels) and not distilled["unmapped"]
    assert student.training["label_weight"] == 0.1 and student.training["distill_weight"] == 0.9

    teacher_f1 = _caption_f1(root, "captions-teacher", teacher_uri, truth)
    student_f1 = _caption_f1(root, "captions-student", str(tmp_path / "student" / BUNDLE_NAME), truth)
    (tmp_path / "f1.json").write_text(json.dumps({"teacher_f1": teacher_f1, "student_f1": student_f1}))
    print("F1", json.dumps({"teacher_f1": teacher_f1, "student_f1": student_f1}))
    assert teacher_f1 >= 0.8, teacher_f1  # a teacher worth learning from
    assert student_f1 >= 0.9 * teacher_f1, (student_f1, teacher_f1)

    # computed once: a rerun with the same teacher, data and media reuses the targets
    marker = tmp_path / "student" / DISTILL_DIR / shards.DATASET_JSON
    before = marker.read_bytes()
    again, _ = prepare_distillation(str(root / "valid-only"), str(tmp_path / "student"), teacher_uri, [str(root / "unlabelled")])
    assert marker.read_bytes() == before and again == str(tmp_path / "student" / DISTILL_DIR)


@pytest.mark.ray
def test_a_teacher_with_other_features_cannot_score_the_datasets_spectrograms(corpus, tmp_path):
    from sound_captions.bundle import ModelBundle, save_bundle
    from sound_captions.models import build_model

    root, _ = corpus
    other = FeatureConfig.preset("32x32x1")
    labels = list(KIND_LABELS.values())
    model = build_model("compact", len(labels), (1, 32, 32), **STUDENT_HPARAMS)
    save_bundle(ModelBundle(
        architecture="compact", hparams=STUDENT_HPARAMS, state_dict=model.state_dict(), labels=labels,
        label_names=dict.fromkeys(labels, "x"), caption_text={}, thresholds=dict.fromkeys(labels, 0.5), feature_config=other,
    ), str(tmp_path / "other.bundle"))
    with pytest.raises(DistillationError, match="other features"):
        prepare_distillation(str(root / "labelled"), str(tmp_path / "run"), str(tmp_path / "other.bundle"))

    # a valid split alone + unlabelled media: the teacher labels the media through its own features
    uri, summary = prepare_distillation(str(root / "valid-only"), str(tmp_path / "run"), str(tmp_path / "other.bundle"), [str(root / "unlabelled")])
    assert summary["dataset_rows"] == 0 and summary["unlabelled_media"] == 16
    info = shards.load_dataset_info(uri)
    assert info.feature_config == CFG
    table = pa.concat_tables([shards.read_table(u) for u in shards.shard_uris(uri, info)])
    one = table.filter(pc.equal(table.column("source"), str(root / "unlabelled" / "u03.mp4")))
    assert one.num_rows == 6 and not any(one.column("labelled").to_pylist())
    assert set(one.column("split").to_pylist()) == {"train"}
    model.eval()
    feats = compute_features(decode_audio(str(root / "unlabelled" / "u03.mp4"), sample_rate_hz=16_000), other)
    with torch.no_grad():
        want = torch.sigmoid(model(torch.as_tensor(feats).permute(0, 3, 1, 2))).numpy()
    got = one.column("teacher").combine_chunks().to_numpy_ndarray()
    order = [labels.index(m) for m in info.labels]  # the student's label order
    np.testing.assert_allclose(got, want[:, order], atol=1e-5)


@pytest.mark.ray
def test_a_teacher_with_the_datasets_features_scores_its_train_rows_and_a_new_teacher_recomputes(corpus, tmp_path):
    from sound_captions.train.data import read_split

    root, _ = corpus
    first = train_tiny_bundle(tmp_path / "a.bundle", seed=1, epochs=2, cfg=CFG)
    uri, summary = prepare_distillation(str(root / "labelled"), str(tmp_path / "run"), str(tmp_path / "a.bundle"))
    info = shards.load_dataset_info(uri)
    table = pa.concat_tables([shards.read_table(u) for u in shards.shard_uris(uri, info)])
    train_rows = table.filter(pc.equal(table.column("split"), "train"))
    assert summary["dataset_rows"] == train_rows.num_rows > 0 and all(table.column("labelled").to_pylist())
    model = first.build_model()
    with torch.no_grad():  # each row's target is the teacher's score of that row's own spectrogram
        x = torch.as_tensor(shards.spectrograms(train_rows).astype(np.float32)).permute(0, 3, 1, 2)
        want = torch.sigmoid(model(x)).numpy()[:, [first.labels.index(m) for m in info.labels]]
    np.testing.assert_allclose(train_rows.column("teacher").combine_chunks().to_numpy_ndarray(), want, atol=1e-5)
    valid_rows = table.filter(pc.equal(table.column("split"), "valid"))
    assert not valid_rows.column("teacher").combine_chunks().to_numpy_ndarray().any()  # never read

    # a context student reads them through the grouped (shuffled) split, valid-only clips included
    split = read_split(uri, info, "train", in_memory=True, context=1, distill=True)
    rows = split.take_all()
    assert len(rows) == train_rows.num_rows and rows[0]["t"].shape == (len(info.labels),)
    assert sorted(float(r["t"].sum()) for r in rows) == pytest.approx(sorted(want.sum(axis=1).tolist()), abs=1e-4)

    # another teacher: recomputed, and the first teacher's shards are gone
    old_shards = shards.shard_uris(uri, info)
    second = train_tiny_bundle(tmp_path / "b.bundle", seed=2, epochs=2, cfg=CFG)
    _, again = prepare_distillation(str(root / "labelled"), str(tmp_path / "run"), str(tmp_path / "b.bundle"))
    assert again["teacher_digest"] == second.digest() != summary["teacher_digest"]
    assert not any(Path(u).exists() for u in old_shards)
