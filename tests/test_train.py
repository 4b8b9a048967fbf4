"""Training with Ray Train on generated shards: two CPU workers, a bundle that captions."""

from __future__ import annotations

import json
import signal
import threading
import time

import numpy as np
import pytest

from sound_captions.bundle import load_bundle
from sound_captions.dataset.build import BuildOptions, build_dataset
from sound_captions.dataset.shards import load_dataset_info
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
        # ~8 windows per shard: several shards, as any real dataset has (issue 16: listing more
        # than one shard took Ray Data through fsspec's HTTP filesystem, which needs aiohttp).
        BuildOptions(split_fractions=(0.6, 0.4, 0.0), seed=1, target_shard_mb=0.25),
        source_failures=failures,
    )
    return root / "dataset"


@pytest.mark.ray
@pytest.mark.slow
def test_two_cpu_workers_train_a_usable_bundle(small_dataset, tmp_path):
    assert len(load_dataset_info(str(small_dataset)).shards) >= 2
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
    tuning = loaded.metrics["thresholds"]  # which labels had too few validation positives
    assert tuning["min_positives"] == 5 and set(tuning["valid_positives"]) == set(loaded.labels)
    assert tuning["fallback"] == [m for m in loaded.labels if tuning["valid_positives"][m] < 5]
    assert all(loaded.thresholds[m] == tuning["pooled"] for m in tuning["fallback"])


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
    assert _without_timing(history_a) == _without_timing(history_b)
    assert bundle_a.digest() == bundle_b.digest()
    assert bundle_a.thresholds == bundle_b.thresholds


def _without_timing(history: list[dict]) -> list[dict]:
    """A run's history less its wall-clock figures, which no seed fixes."""
    return [{key: value for key, value in epoch.items() if key != "epoch_s"} for epoch in history]


def _train_worker_processes(started_after: float) -> list:
    """This run's live Ray Train worker processes: descendants of this process (the raylet that
    ray.init started here forks them, so other Ray sessions are never touched), started after
    ``started_after`` (earlier tests' workers may still be exiting), not zombies."""
    import psutil

    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            parent = proc.parent()
            if (
                "RayTrainWorker" in " ".join(proc.cmdline())
                and proc.create_time() >= started_after
                and proc.status() != psutil.STATUS_ZOMBIE
                # the actor's own process, not a helper process it forked (which keeps its title)
                and parent is not None
                and "RayTrainWorker" not in " ".join(parent.cmdline())
            ):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def _epochs_written(out) -> list[int]:
    path = out / METRICS_NAME
    if not path.exists():
        return []
    return [h["epoch"] for h in _history(out)]  # metrics.jsonl is replaced atomically


def _registered_checkpoint_epoch(out, name: str) -> int | None:
    """The epoch of the latest checkpoint Ray Train's controller has registered (it writes
    ``checkpoint_manager_snapshot.json`` when it does); ``None`` before the first one. A report a
    worker made but the controller has not collected yet is lost when the workers die."""
    path = out / name / "checkpoint_manager_snapshot.json"
    try:
        latest = json.loads(path.read_text()).get("latest_checkpoint_result")
    except (OSError, ValueError):
        return None
    return None if not latest else int(latest["metrics"]["epoch"])


def _kill_workers_after_checkpoint(
    out, name: str, record: dict, stop: threading.Event, started_after: float
) -> None:
    """Wait until the controller has registered a checkpoint, then SIGKILL the run's workers."""
    while not stop.is_set():
        registered = _registered_checkpoint_epoch(out, name)
        if registered is not None:
            workers = _train_worker_processes(started_after)
            if workers:
                # Every worker process of the group: which process is which rank is not visible
                # from outside, and a process outside the group would survive the kill unnoticed.
                for victim in workers:
                    victim.send_signal(signal.SIGKILL)
                record.update(
                    pids=[w.pid for w in workers],
                    registered=registered,
                    seen=max(_epochs_written(out), default=-1),
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
    epochs = 6  # the kill lands after the first registered checkpoint; the rest leaves time for it
    record: dict = {}
    stop = threading.Event()
    killer = threading.Thread(
        target=_kill_workers_after_checkpoint,
        args=(out, "killed-worker", record, stop, time.time() - 1.0),
        daemon=True,
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
    assert "pids" in record, "the run finished before a worker could be killed"
    assert all(
        not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        for pid in record["pids"]
    )

    history = _history(out)
    assert [h["epoch"] for h in history] == list(range(epochs)), "every epoch once, in order"
    restarted = [h["attempt_start_epoch"] for h in history if h["attempt_start_epoch"] > 0]
    assert restarted, f"no epoch ran in a restarted attempt (kill: {record}; history: {history})"
    restart = min(restarted)
    # The new attempt starts right after a checkpoint the controller had registered by the kill.
    assert record["registered"] + 1 <= restart <= record["seen"] + 1
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


@pytest.mark.ray
@pytest.mark.slow
def test_context_model_trains_and_evaluates_with_neighbours_across_shards(small_dataset, tmp_path):
    """mobilenet with context: Ray Train stacks each second with its clip neighbours, and
    ``evaluate`` (embeddings per shard, heads once the whole split is known) gives the numbers
    the model gives on the stacked input."""
    import pyarrow as pa
    import torch
    from click.testing import CliRunner

    from sound_captions.cli import main
    from sound_captions.context import neighbour_index, silence_spectrogram, stack_context
    from sound_captions.dataset import shards
    from sound_captions.evaluate import score_dataset
    from sound_captions.features import to_model_input

    out = tmp_path / "ctx"
    # through the CLI, which must also print a line per epoch when not on a terminal (issue 13)
    hparams = json.dumps({"width_mult": 0.25, "embed_dim": 32, "context": 1})
    result = CliRunner().invoke(
        main, ["train", "--data", str(small_dataset), "--out", str(out), "--model", "mobilenet", "--hparams", hparams,
               "--epochs", "2", "--batch-size", "8", "--patience", "0", "--max-failures", "0", "--seed", "5"],
    )
    assert result.exit_code == 0, result.output + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in lines] == ["1/2", "2/2"], result.stderr
    assert "valid mAP" in lines[0] and "samples/s" in lines[0] and "min left" in lines[0]
    assert "model.bundle" in result.stdout
    bundle = load_bundle(str(out / BUNDLE_NAME))
    assert bundle.architecture == "mobilenet" and bundle.context == 1
    assert [h["epoch"] for h in _history(out)] == [0, 1]
    y, scores, meta = score_dataset(bundle, str(small_dataset), split="valid")

    info = load_dataset_info(str(small_dataset))
    assert len(info.shards) >= 2
    table = pa.concat_tables([shards.read_table(u) for u in shards.shard_uris(str(small_dataset), info)])
    table = table.filter(pa.compute.equal(table.column("split"), "valid"))
    assert table.column("clip_id").to_pylist() == meta.column("clip_id").to_pylist()
    index = neighbour_index(table.column("clip_id").to_pylist(), table.column("augment").to_pylist(), table.column("start_s").to_numpy(), 1)
    assert (index[:, 0] >= 0).any() and (index[:, 2] >= 0).any()  # clips of 3 s: real neighbours
    x = stack_context(np.asarray(shards.spectrograms(table), dtype=np.float32), index, silence_spectrogram(bundle.feature_config))
    with torch.inference_mode():
        want = torch.sigmoid(bundle.build_model()(to_model_input(x))).numpy()
    np.testing.assert_allclose(scores, want, atol=1e-4)
    assert y.shape == scores.shape == (len(table), 3)


def test_the_controller_polls_often_while_training_unless_the_user_says_otherwise(monkeypatch):
    """Each epoch's report waits for the controller's next poll (2 s by Ray's default): while a
    trainer starts, the poll interval Ray Train hands its controller is short; a value the user
    set is kept, and nothing is left set afterwards."""
    import os

    from ray.train.v2._internal.constants import get_env_vars_to_propagate

    from sound_captions.train.run import POLL_ENV, POLL_INTERVAL_S, controller_poll_interval

    monkeypatch.delenv(POLL_ENV, raising=False)
    with controller_poll_interval():
        assert get_env_vars_to_propagate()[POLL_ENV] == str(POLL_INTERVAL_S) and POLL_INTERVAL_S < 1
    assert POLL_ENV not in os.environ
    with pytest.raises(RuntimeError), controller_poll_interval():
        raise RuntimeError("a failed fit")
    assert POLL_ENV not in os.environ
    monkeypatch.setenv(POLL_ENV, "5")
    with controller_poll_interval():
        assert get_env_vars_to_propagate()[POLL_ENV] == "5"
    assert os.environ[POLL_ENV] == "5"
