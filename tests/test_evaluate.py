"""Evaluation: a tiny on-disk dataset (no Ray), a compact model trained in the test, the report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sound_captions.bundle import ModelBundle, load_bundle, save_bundle
from sound_captions.dataset import shards
from sound_captions.evaluate import (
    NoEvaluationDataError,
    evaluate,
    label_confusion,
    score_dataset,
)
from sound_captions.evaluate_plots import PLOT_NAMES
from sound_captions.features import FeatureConfig, FeatureConfigMismatchError, to_model_input
from sound_captions.metrics import mean_average_precision, segment_metrics, tune_thresholds
from sound_captions.models import build_model

VOCABULARY = {"/m/0bt9lr": "Dog", "/m/04rlf": "Music", "/m/07yv9": "Vehicle"}
LABELS = list(VOCABULARY)
CFG = FeatureConfig(height=16, width=16)  # small maps keep the in-test training fast
BAND = 4  # label k brightens frequency rows [k*BAND, (k+1)*BAND)
# four pooling blocks: the receptive field spans the map, so the band position can be learnt
HPARAMS = {"filters": (8, 8, 16, 16), "conv_dropout": 0.0, "head_units": 16, "head_dropout": 0.0}


def make_rows(
    n: int, split: str, rng: np.random.Generator, cfg: FeatureConfig = CFG, offset: int = 0
) -> dict:
    """n windows with random label sets; label k is a bright band of frequency rows."""
    active = rng.random((n, len(LABELS))) < 0.35
    spec = rng.standard_normal((n, *cfg.shape)).astype(np.float32)
    for k in range(len(LABELS)):
        spec[active[:, k], k * BAND : (k + 1) * BAND, :, :] += 2.5
    return {
        "clip_id": [f"{split}-{(offset + i) // 10}" for i in range(n)],
        "source": [f"file:///clips/{split}-{(offset + i) // 10}.wav" for i in range(n)],
        "second": [(offset + i) % 10 for i in range(n)],
        "start_s": [float((offset + i) % 10) for i in range(n)],
        "labels": [[m for m, on in zip(LABELS, row, strict=True) if on] for row in active],
        "split": [split] * n,
        "spectrogram": spec,
    }


def concat_rows(*parts: dict) -> dict:
    out = {}
    for key in parts[0]:
        out[key] = (
            np.concatenate([p[key] for p in parts])
            if key == "spectrogram"
            else sum((list(p[key]) for p in parts), [])
        )
    return out


def write_dataset(
    root, parts: list[dict], cfg: FeatureConfig = CFG, vocabulary: dict = VOCABULARY
) -> str:
    rels = []
    for k, rows in enumerate(parts):
        rel = f"shards/part-{k:04d}.parquet"
        shards.write_table(shards.shard_table(rows, cfg), str(root / rel))
        rels.append(rel)
    shards.write_dataset_info(
        str(root), shards.DatasetInfo(feature_config=cfg, vocabulary=dict(vocabulary), shards=rels)
    )
    return str(root)


def make_bundle(
    model: torch.nn.Module, *, labels=LABELS, cfg=CFG, thresholds=None, metrics=None, digest=""
) -> ModelBundle:
    return ModelBundle(
        architecture="compact",
        hparams=dict(HPARAMS),
        state_dict=model.state_dict(),
        labels=list(labels),
        label_names={m: VOCABULARY.get(m, m) for m in labels},
        caption_text={},
        thresholds=thresholds or {m: 0.5 for m in labels},
        feature_config=cfg,
        dataset_digest=digest,
        metrics=metrics or {},
    )


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Other test runs share the 2 cores: one intra-op thread is many times faster here than two
    threads fighting for them (measured: ~2 s against over a minute for the training below)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> str:
    rng = np.random.default_rng(0)
    # two shards, each mixing splits, so the split filter and the shard loop both matter
    first = concat_rows(make_rows(300, "train", rng), make_rows(60, "test", rng))
    second = concat_rows(
        make_rows(100, "train", rng, offset=300),
        make_rows(90, "test", rng, offset=60),
        make_rows(80, "valid", rng),
    )
    return write_dataset(tmp_path_factory.mktemp("data"), [first, second])


def train_compact(
    data: str, steps_per_epoch: int = 12, epochs: int = 5
) -> tuple[torch.nn.Module, list[dict]]:
    """Plain torch training on the train split; returns the model (eval mode) and its history."""
    info = shards.load_dataset_info(data)
    tables = [shards.read_table(u) for u in shards.shard_uris(data, info)]
    x = np.concatenate([shards.spectrograms(t) for t in tables])
    labels = sum((t.column("labels").to_pylist() for t in tables), [])
    split = np.array(sum((t.column("split").to_pylist() for t in tables), []))
    y = np.array([[m in row for m in LABELS] for row in labels], dtype=np.float32)
    xt, yt = to_model_input(x[split == "train"]), torch.from_numpy(y[split == "train"])
    xv, yv = to_model_input(x[split == "valid"]), y[split == "valid"]
    history = []
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build_model("compact", len(LABELS), (1, CFG.height, CFG.width), **HPARAMS)
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        g = torch.Generator().manual_seed(0)
        for epoch in range(epochs):
            model.train()
            total = 0.0
            for _ in range(steps_per_epoch):
                idx = torch.randint(0, len(xt), (32,), generator=g)
                optimizer.zero_grad()
                loss = loss_fn(model(xt[idx]), yt[idx])
                loss.backward()
                optimizer.step()
                total += float(loss.detach())
            model.eval()
            with torch.no_grad():
                pv = torch.sigmoid(model(xv)).numpy()
            history.append(
                {
                    "epoch": epoch,
                    "train_loss": total / steps_per_epoch,
                    "valid_map": mean_average_precision(yv > 0.5, pv),
                }
            )
    with torch.no_grad():
        pv = torch.sigmoid(model(xv)).numpy()
    thresholds = tune_thresholds(yv > 0.5, pv, LABELS, target_precision=0.9)
    return model, history, thresholds


@pytest.fixture(scope="module")
def trained_bundle(dataset, tmp_path_factory) -> str:
    model, history, thresholds = train_compact(dataset)
    best = max(history, key=lambda h: h["valid_map"])
    bundle = make_bundle(
        model,
        thresholds=thresholds,
        metrics={
            "history": history,
            "best_epoch": best["epoch"],
            "best_valid_map": best["valid_map"],
        },
        digest=shards.dataset_digest(dataset),
    )
    uri = str(tmp_path_factory.mktemp("model") / "model.bundle")
    save_bundle(bundle, uri)
    return uri


@pytest.fixture(scope="module")
def random_bundle() -> ModelBundle:
    with torch.random.fork_rng():
        torch.manual_seed(1)
        model = build_model("compact", len(LABELS), (1, CFG.height, CFG.width), **HPARAMS)
    return make_bundle(model.eval())


@pytest.fixture(scope="module")
def trained_report(trained_bundle, dataset, tmp_path_factory) -> dict:
    return evaluate(
        trained_bundle, dataset, split="test", out_dir=str(tmp_path_factory.mktemp("report"))
    )


def nan_equal(a, b) -> bool:
    """Deep equality where NaN equals NaN (and None stands for NaN on the JSON side)."""
    if isinstance(a, dict):
        return (
            isinstance(b, dict) and a.keys() == b.keys() and all(nan_equal(a[k], b[k]) for k in a)
        )
    if isinstance(a, float) and math.isnan(a):
        return b is None or (isinstance(b, float) and math.isnan(b))
    if isinstance(a, float) or isinstance(b, float):
        return b is not None and math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0)
    return a == b


def test_report_structure(trained_report, trained_bundle, dataset):
    r = trained_report
    assert r["format"] == "sound-captions/evaluation/1"
    assert r["n_windows"] == 150  # 60 + 90 test windows
    assert r["labels"] == LABELS and r["label_names"] == VOCABULARY
    assert r["labels_missing_from_dataset"] == []
    bundle = load_bundle(trained_bundle)
    assert r["model"]["digest"] == bundle.digest() and r["model"]["uri"] == trained_bundle
    assert r["model"]["training_dataset_digest"] == shards.dataset_digest(dataset)
    assert r["data"] == {"uri": dataset, "digest": shards.dataset_digest(dataset), "split": "test"}
    assert r["thresholds"] == bundle.thresholds
    seg = r["segment"]
    assert set(seg["class_wise"]) == set(LABELS)
    for key in ("precision", "recall", "f_measure", "error_rate"):
        assert key in seg["overall"] and key in seg["macro"] and key in seg["macro_present"]
    assert set(r["average_precision"]) == set(LABELS)
    assert r["map"] == pytest.approx(np.mean(list(r["average_precision"].values())))
    assert r["summary"]["micro_f1"] == seg["overall"]["f_measure"]
    assert r["summary"]["map"] == r["map"]
    assert r["label_confusion"]["labels"] and len(r["label_confusion"]["matrix"]) == len(
        r["label_confusion"]["labels"]
    )
    on_disk = json.loads(
        Path(r["report_uri"]).read_text(),
        parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"),
    )
    assert nan_equal(r["segment"], on_disk["segment"])
    assert on_disk["plots"] == r["plots"]


def test_trained_model_far_above_random_weights(trained_report, random_bundle, dataset):
    random_report = evaluate(random_bundle, dataset, split="test")
    trained_f1 = trained_report["summary"]["micro_f1"]
    random_f1 = np.nan_to_num(random_report["summary"]["micro_f1"])
    assert trained_f1 > 0.85, trained_report["summary"]
    assert trained_f1 > random_f1 + 0.3
    assert trained_report["map"] > 0.9 and trained_report["map"] > random_report["map"] + 0.3


def test_segment_metrics_equal_a_direct_call(trained_report, trained_bundle, dataset):
    bundle = load_bundle(trained_bundle)
    y_true, scores, meta = score_dataset(bundle, dataset, "test")
    assert (
        y_true.dtype == bool
        and scores.dtype == np.float32
        and y_true.shape == scores.shape == (150, 3)
    )
    assert meta.num_rows == 150 and set(meta.column("split").to_pylist()) == {"test"}
    thresholds = np.array([bundle.thresholds[m] for m in LABELS])
    direct = segment_metrics(y_true, scores >= thresholds, LABELS)
    assert nan_equal(direct, trained_report["segment"])
    conf = label_confusion(y_true, scores >= thresholds)
    diag = np.diag(conf["matrix"])
    assert [direct["class_wise"][m]["n_tp"] for m in LABELS] == diag.tolist()


def test_reference_roll_matches_the_shards(trained_bundle, dataset):
    bundle = load_bundle(trained_bundle)
    y_true, _, meta = score_dataset(bundle, dataset, "test")
    info = shards.load_dataset_info(dataset)
    expected = []
    for uri in shards.shard_uris(dataset, info):
        for row in shards.read_table(uri).select(["labels", "split"]).to_pylist():
            if row["split"] == "test":
                expected.append([m in row["labels"] for m in LABELS])
    assert y_true.tolist() == expected
    assert meta.column("clip_id").to_pylist()[0] == "test-0"


def test_batch_size_does_not_change_scores(random_bundle, dataset):
    _, big, _ = score_dataset(random_bundle, dataset, "test", batch_size=128)
    _, small, _ = score_dataset(random_bundle, dataset, "test", batch_size=7)
    np.testing.assert_allclose(small, big, rtol=1e-5, atol=1e-6)
    y_all, _, meta = score_dataset(random_bundle, dataset, None)
    assert y_all.shape[0] == 630 and set(meta.column("split").to_pylist()) == {
        "train",
        "test",
        "valid",
    }


def test_labels_follow_the_bundle_order_and_missing_ones_are_false(random_bundle, dataset):
    y_ref, _, _ = score_dataset(random_bundle, dataset, "test")
    extra = "/m/0ytgt"  # in the bundle, not in the dataset's vocabulary
    order = [LABELS[2], extra, LABELS[0], LABELS[1]]
    with torch.random.fork_rng():
        torch.manual_seed(2)
        model = build_model("compact", len(order), (1, CFG.height, CFG.width), **HPARAMS)
    bundle = make_bundle(model.eval(), labels=order)
    y, scores, _ = score_dataset(bundle, dataset, "test")
    assert scores.shape == (150, 4)
    np.testing.assert_array_equal(y[:, [2, 3, 0]], y_ref)
    assert not y[:, 1].any()
    report = evaluate(bundle, dataset)
    assert report["labels_missing_from_dataset"] == [extra]
    assert math.isnan(report["average_precision"][extra])


def test_pngs_are_valid_and_non_trivial(trained_report):
    assert set(trained_report["plots"]) == set(PLOT_NAMES)
    for name, uri in trained_report["plots"].items():
        assert uri.endswith(f"{name}.png")
        with Image.open(uri) as image:
            image.verify()
        with Image.open(uri) as image:
            assert image.format == "PNG"
            assert image.width >= 400 and image.height >= 300
            colours = image.convert("L").getextrema()
            assert colours[1] - colours[0] > 100  # drawn content, not a blank canvas


def test_empty_history_gives_a_placeholder_plot(random_bundle, dataset, tmp_path):
    report = evaluate(random_bundle, dataset, out_dir=str(tmp_path))
    with Image.open(report["plots"]["training_curves"]) as image:
        assert image.format == "PNG" and image.width >= 400
    assert (tmp_path / "report.json").exists()


def test_feature_hash_mismatch_is_refused(tmp_path, random_bundle):
    big = FeatureConfig.preset("256x256x3")
    rows = make_rows(2, "test", np.random.default_rng(0), cfg=big)
    data = write_dataset(tmp_path / "big", [rows], cfg=big)
    default = make_bundle(
        build_model("compact", len(LABELS), (1, 128, 128), **HPARAMS), cfg=FeatureConfig()
    )
    with pytest.raises(FeatureConfigMismatchError, match="dataset"):
        evaluate(default, data)
    with pytest.raises(FeatureConfigMismatchError):
        score_dataset(random_bundle, data)


def test_split_without_windows_is_refused(random_bundle, dataset):
    with pytest.raises(NoEvaluationDataError, match="holdout"):
        score_dataset(random_bundle, dataset, "holdout")


def test_not_a_dataset(random_bundle, tmp_path):
    with pytest.raises(shards.NotADatasetError):
        evaluate(random_bundle, str(tmp_path))


def test_label_confusion_counts_by_hand():
    # windows: {a}, {a, b}, {}, {b}
    y_true = np.array([[1, 0], [1, 1], [0, 0], [0, 1]], dtype=bool)
    # fires:   {a, b}, {a}, {b}, {}
    y_pred = np.array([[1, 1], [1, 0], [0, 1], [0, 0]], dtype=bool)
    conf = label_confusion(y_true, y_pred)
    assert conf["matrix"].tolist() == [[2, 1], [1, 0]]
    assert conf["false_alarms"].tolist() == [
        [0, 1],
        [0, 0],
    ]  # b fired on window 0, where only a was
    assert conf["none_predicted"].tolist() == [0, 1]  # window 3: b true, nothing fired
    assert conf["no_reference"].tolist() == [0, 1]  # window 2: empty reference, b fired


@pytest.fixture()
def s3_bucket_name(request, monkeypatch):
    """The shared ``s3_bucket`` fixture (tests/conftest.py) when there is one; otherwise a moto
    server of this module's own on loopback."""
    try:
        return request.getfixturevalue("s3_bucket")
    except pytest.FixtureLookupError:
        pass
    import socket
    import subprocess
    import sys
    import time

    from sound_captions import storage

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    request.addfinalizer(lambda: (proc.terminate(), proc.wait(timeout=10)))
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("moto server did not start") from None
            time.sleep(0.1)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    for key, value in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        monkeypatch.setenv(key, value)
    storage.s3_client().create_bucket(Bucket="sc-evaluate")
    return "sc-evaluate"


@pytest.mark.network
def test_dataset_bundle_and_report_on_s3(s3_bucket_name, random_bundle, dataset):
    from sound_captions import storage

    root = f"s3://{s3_bucket_name}/eval"
    info = shards.load_dataset_info(dataset)
    for rel in [shards.DATASET_JSON, *info.shards]:
        storage.write_bytes(
            storage.join(root, "data", rel), storage.read_bytes(storage.join(dataset, rel))
        )
    save_bundle(random_bundle, f"{root}/model.bundle")
    report = evaluate(f"{root}/model.bundle", f"{root}/data", out_dir=f"{root}/report")
    local = evaluate(random_bundle, dataset)
    assert nan_equal(report["segment"], local["segment"])
    assert report["data"]["digest"] == local["data"]["digest"]
    assert report["report_uri"] == f"{root}/report/report.json"
    on_s3 = json.loads(storage.read_text(report["report_uri"]))
    assert on_s3["n_windows"] == 150
    for name in PLOT_NAMES:
        png = storage.read_bytes(f"{root}/report/{name}.png")
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5_000
