"""Training with Ray Train on generated shards: two CPU workers, a bundle that captions."""

from __future__ import annotations

import json
import signal
import threading

import numpy as np
import pytest

from sound_captions.bundle import load_bundle
from sound_captions.dataset.build import BuildOptions, build_dataset
from sound_captions.sources.manifest import read_manifest, write_manifest
from sound_captions.testing.media import make_media
from sound_captions.train import BUNDLE_NAME, METRICS_NAME, TrainConfig, train


@pytest.fixture(scope="module")
def small_dataset(ray_session, tmp_path_factory):
    root = tmp_path_factory.mktemp("train-data")
    rows = []
    names = {"beep": "Beep, bleep", "music": "Music", "noise": "White noise"}
    seed = 100
    for kind, name in names.items():
        for i in range(6):
            seed += 1
            make_media(root / "clips" / f"{kind}{i}.wav", [(kind, 3)], seed=seed)
            rows.append((f"clips/{kind}{i}.wav", None, None, [name]))
    for i in range(3):
        make_media(root / "clips" / f"silence{i}.wav", [("silence", 3)], seed=i)
        rows.append((f"clips/silence{i}.wav", None, None, []))
    write_manifest(rows, str(root / "manifest.csv"))
    requests, failures = read_manifest(str(root / "manifest.csv"))
    build_dataset(
        requests,
        str(root / "dataset"),
        BuildOptions(split_fractions=(0.6, 0.4, 0.0), seed=1),
        source_failures=failures,
    )
    return root / "dataset"


@pytest.mark.ray
@pytest.mark.slow
def test_two_cpu_workers_train_a_usable_bundle(small_dataset, tmp_path):
    out = tmp_path / "run"
    bundle = train(
        TrainConfig(
            data=str(small_dataset),
            out=str(out),
            model="compact",
            epochs=12,
            batch_size=4,  # ~19 training windows per worker: 4 steps per epoch, not 2
            learning_rate=3e-3,
            workers=2,
            cpus_per_worker=1,
            patience=0,
            max_failures=0,
            seed=3,
        ),
        name="two-workers",
    )
    history = [json.loads(line) for line in (out / METRICS_NAME).read_text().splitlines()]
    assert [h["epoch"] for h in history] == list(range(12))
    # Chance mAP is the share of positive windows per label: about 0.3 here.
    assert max(h["valid_map"] for h in history) > 0.65, [round(h["valid_map"], 3) for h in history]
    loaded = load_bundle(str(out / BUNDLE_NAME))
    assert loaded.digest() == bundle.digest()
    assert loaded.labels == ["/m/04rlf", "/m/02fs_r", "/m/0chx_"]
    assert loaded.caption_text["/m/02fs_r"] == "[beeping]"
    assert all(0.0 < t < 1.0 for t in loaded.thresholds.values())
    assert np.isfinite(loaded.metrics["best_valid_map"])


def _history(out) -> list[dict]:
    return [
        json.loads(line) for line in (out / METRICS_NAME).read_text().splitlines() if line.strip()
    ]


@pytest.mark.ray
@pytest.mark.slow
def test_same_seed_same_bundle_streaming_or_in_memory(small_dataset, tmp_path):
    """On CPU with one worker a seed fixes the run: the data order (preserve_order, seeded local
    shuffle), the initial weights and every dropout draw. Streaming the shards or holding them
    in the object store feeds the same batches, so both runs end in the same weights."""
    runs = {}
    for in_memory in (True, False):
        out = tmp_path / f"run-in-memory-{in_memory}"
        cfg = TrainConfig(
            data=str(small_dataset),
            out=str(out),
            model="compact",
            epochs=2,
            batch_size=8,
            workers=1,
            patience=0,
            max_failures=0,
            seed=11,
            in_memory=in_memory,
        )
        runs[in_memory] = (train(cfg, name=f"determinism-{in_memory}"), _history(out))
    (bundle_a, history_a), (bundle_b, history_b) = runs[True], runs[False]
    assert [h["epoch"] for h in history_a] == [0, 1]
    assert history_a == history_b
    assert bundle_a.digest() == bundle_b.digest()
    assert bundle_a.thresholds == bundle_b.thresholds


def _train_worker_processes() -> list:
    """This test session's Ray Train worker processes (descendants of this process: the raylet
    that ray.init started here forks them), so runs of other Ray sessions are never touched."""
    import psutil

    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if "RayTrainWorker" in " ".join(proc.cmdline()):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def _epochs_written(out) -> list[int]:
    path = out / METRICS_NAME
    if not path.exists():
        return []
    return [h["epoch"] for h in _history(out)]  # metrics.jsonl is replaced atomically


def _kill_a_worker_after_epoch(out, epoch: int, record: dict, stop: threading.Event) -> None:
    """Wait until ``epoch`` is in metrics.jsonl (so the checkpoint of ``epoch - 1`` is stored),
    then SIGKILL one training worker process."""
    while not stop.is_set():
        seen = _epochs_written(out)
        if seen and max(seen) >= epoch:
            workers = _train_worker_processes()
            if workers:
                victim = workers[0]
                victim.send_signal(signal.SIGKILL)
                record.update(
                    pid=victim.pid, seen_before=max(seen), seen_after=max(_epochs_written(out))
                )
                return
        stop.wait(0.05)


@pytest.mark.ray
@pytest.mark.slow
def test_killed_worker_resumes_from_its_last_checkpoint(small_dataset, tmp_path):
    """A worker process dies by SIGKILL in the middle of a run: Ray Train restarts the worker
    group (max_failures=1), the loop resumes from the last checkpoint, and the run finishes."""
    import psutil

    out = tmp_path / "run"
    epochs = 4
    record: dict = {}
    stop = threading.Event()
    killer = threading.Thread(
        target=_kill_a_worker_after_epoch, args=(out, 1, record, stop), daemon=True
    )
    killer.start()
    try:
        bundle = train(
            TrainConfig(
                data=str(small_dataset),
                out=str(out),
                model="compact",
                epochs=epochs,
                batch_size=4,
                workers=2,
                cpus_per_worker=1,
                patience=0,
                max_failures=1,
                seed=5,
            ),
            name="killed-worker",
        )
    finally:
        stop.set()
        killer.join(timeout=60)
    assert "pid" in record, "the run finished before a worker could be killed"
    assert (
        not psutil.pid_exists(record["pid"])
        or psutil.Process(record["pid"]).status() == psutil.STATUS_ZOMBIE
    )

    history = _history(out)
    assert [h["epoch"] for h in history] == list(range(epochs)), "every epoch once, in order"
    restart = min(h["attempt_start_epoch"] for h in history if h["attempt_start_epoch"] > 0)
    # The killed attempt had stored the checkpoint of epoch seen_before - 1 (its epoch
    # seen_before was running or reporting): the new attempt starts right after a stored one.
    assert record["seen_before"] <= restart <= record["seen_after"] + 1
    assert [h["attempt_start_epoch"] for h in history] == [0] * restart + [restart] * (
        epochs - restart
    )
    # The resumed attempt took its best-so-far from the checkpoint (or improved on it).
    assert history[restart]["best_valid_map"] in (
        history[restart - 1]["best_valid_map"],
        history[restart]["valid_map"],
    )
    loaded = load_bundle(str(out / BUNDLE_NAME))
    assert loaded.digest() == bundle.digest()
    assert [h["epoch"] for h in loaded.metrics["history"]] == list(range(epochs))
