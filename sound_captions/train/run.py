"""Shards → trained model bundle, with Ray Train's ``TorchTrainer`` on CPU or GPU workers.

The train loop reads the dataset through Ray Data (``iter_torch_batches``), optionally held in
the object store (the study's tip: I/O was its bottleneck), and writes per epoch: metrics to
``<run>/metrics.jsonl`` and a checkpoint to Ray Train's storage under ``<run>/ray``. A worker
failure restarts the group from the last checkpoint (``FailureConfig``). At the end the best
checkpoint (validation mAP) becomes ``<run>/model.bundle`` with per-label thresholds tuned on the
validation split."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import replace

import torch

from sound_captions import storage
from sound_captions.bundle import ModelBundle, save_bundle
from sound_captions.caption.vocabulary import CaptionVocabulary
from sound_captions.dataset import shards
from sound_captions.metrics import tune_thresholds_pooled
from sound_captions.train.config import BUNDLE_NAME, METRICS_NAME, TrainConfig
from sound_captions.train.data import (
    arrow_filesystem,
    label_pos_weights,
    ordered_ingest_options,
    read_split,
    strip_scheme,
)
from sound_captions.train.loop import (
    predict,
    train_loop_per_worker,
)

log = logging.getLogger(__name__)


def epoch_line(m: dict, epochs: int) -> str:
    """One metrics.jsonl entry → the line a user watching a run reads."""
    line = (
        f"epoch {m['epoch'] + 1}/{epochs}  train loss {m['train_loss']:.4f}  valid loss {m['valid_loss']:.4f}"
        f"  valid mAP {m['valid_map']:.3f} (best {m['best_valid_map']:.3f})"
    )
    if m.get("epoch_s"):
        line += f"  {m['train_samples'] / m['epoch_s']:.0f} samples/s  ~{m['epoch_s'] * (epochs - m['epoch'] - 1) / 60:.1f} min left at most"
    return line


class _EpochWatcher:
    """Driver side: tails ``metrics.jsonl`` while Ray Train runs and hands each new epoch's
    entry to ``progress`` (the workers' own output stays in Ray's logs)."""

    def __init__(self, out: str, progress, every_s: float = 2.0):
        import threading

        self.uri, self.progress, self.every_s, self.seen = storage.join(out, METRICS_NAME), progress, every_s, set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def poll(self, notify: bool = True) -> None:
        try:
            text = storage.read_text(self.uri) if storage.exists(self.uri) else ""
        except Exception:  # noqa: BLE001 - a half-written or unreadable file: next time
            return
        for line in text.splitlines():
            try:
                m = json.loads(line)
            except ValueError:
                continue
            key = (m.get("epoch"), m.get("attempt_start_epoch"))
            if key not in self.seen:
                self.seen.add(key)
                if notify:
                    self.progress(m)

    def _run(self) -> None:
        while not self.stop.wait(self.every_s):
            self.poll()

    def __enter__(self):
        self.poll(notify=False)  # entries an earlier run left in this folder are not news
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        self.poll()


# Ray Train V2's controller polls its workers every RAY_TRAIN_HEALTH_CHECK_INTERVAL_S (2 s by
# default), and a worker's ray.train.report() waits for the poll that collects the report before
# it. An epoch shorter than that interval (a small dataset, a fine-tune, a fold of `dataset
# clean`) waits out the rest: measured here, 0.3 s of training and 2 s of waiting per epoch.
# A poll is one small actor task per worker; one that does not answer in time is awaited at the
# next poll, never counted as a failure before WORKER_HEALTH_CHECK_TIMEOUT_S (10 min).
POLL_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
POLL_INTERVAL_S = 0.2


@contextlib.contextmanager
def controller_poll_interval(seconds: float = POLL_INTERVAL_S):
    """While the trainer starts, ``POLL_ENV`` is ``seconds`` unless the user set it; Ray Train
    hands the driver's value to its controller actor. Restored afterwards."""
    if POLL_ENV in os.environ:
        yield
        return
    os.environ[POLL_ENV] = str(seconds)
    try:
        yield
    finally:
        os.environ.pop(POLL_ENV, None)


def train(
    cfg: TrainConfig, *, vocabulary: CaptionVocabulary | None = None, name: str = "train", progress=None
) -> ModelBundle:
    """Train on the current Ray cluster; returns the bundle written to ``<out>/model.bundle``.

    ``progress``: called on the driver with each epoch's metrics (a dict, as in
    ``metrics.jsonl``) soon after the epoch ends; the CLI prints :func:`epoch_line` of it."""
    import ray.train
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from sound_captions.models import build_model, context_seconds, default_hparams

    if cfg.select_checkpoint not in ("best", "last"):
        raise ValueError(f"select_checkpoint must be best or last, got {cfg.select_checkpoint!r}")
    info = shards.load_dataset_info(cfg.data)
    if not info.shards:
        raise ValueError(
            f"{cfg.data}: the dataset has no shards (did every item fail? see failures.parquet)"
        )
    h, w, c = info.feature_config.shape
    input_shape = (c, h, w)
    init_state, init_record = None, None
    if cfg.init_from:
        from sound_captions.bundle import load_bundle
        from sound_captions.train.init import architecture_of, initial_weights

        init_bundle = load_bundle(cfg.init_from)  # read once: a pretrained bundle can be hundreds of MB
        model_name, bundle_hparams = architecture_of(init_bundle)
        if model_name != cfg.model:
            log.info("--init-from: training %s, the bundle's architecture (not %s)", model_name, cfg.model)
        cfg = replace(cfg, model=model_name, hparams=bundle_hparams)
    hparams = {**default_hparams(cfg.model), **cfg.hparams}
    if cfg.init_from:
        fresh = build_model(cfg.model, len(info.labels), input_shape, **hparams)
        wider = build_model(cfg.model, len(info.labels) + 1, input_shape, **hparams).state_dict()
        head = {k for k, v in fresh.state_dict().items() if v.shape != wider[k].shape}  # one row per label
        init_state, init_record = initial_weights(cfg.init_from, info.labels, info.feature_config, fresh, head, source=init_bundle)
    vocabulary = vocabulary or CaptionVocabulary.load()
    captions = vocabulary.resolve(info.labels, dict(info.vocabulary))
    for line in captions.warnings(dict(info.vocabulary)):
        log.warning(line)
    context = context_seconds(cfg.model, hparams)
    data, distillation = cfg.data, None
    if cfg.teacher:
        from sound_captions.distill import prepare_distillation

        data, distillation = prepare_distillation(cfg.data, cfg.out, cfg.teacher, cfg.unlabelled)
        distillation = {**distillation, "label_weight": cfg.label_weight, "distill_weight": cfg.distill_weight}
        info_read = shards.load_dataset_info(data)
    elif cfg.unlabelled:
        raise ValueError("--unlabelled media need a --teacher to label them")
    else:
        info_read = info
    train_ds = read_split(data, info_read, "train", in_memory=cfg.in_memory, context=context, distill=bool(cfg.teacher))
    valid_ds = read_split(data, info_read, "valid", in_memory=cfg.in_memory, context=context)
    storage_path = cfg.out if storage.is_s3(cfg.out) else str(storage.local_path(cfg.out).resolve())
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "train": {**cfg.to_dict(), "hparams": hparams},
            "vocabulary": info.labels,
            "input_shape": list(input_shape),
            "pos_weight": label_pos_weights(info),
            # label columns the teacher has a target for
            "distill_mask": [m not in distillation["unmapped"] for m in info.labels] if distillation else None,
            "init_state": init_state,
        },
        scaling_config=ScalingConfig(
            num_workers=cfg.workers,
            use_gpu=cfg.gpus_per_worker > 0,
            resources_per_worker={
                "CPU": cfg.cpus_per_worker,
                **({"GPU": cfg.gpus_per_worker} if cfg.gpus_per_worker > 0 else {}),
            },
        ),
        run_config=RunConfig(
            name=name,
            storage_path=strip_scheme(storage_path)
            if storage.is_s3(storage_path)
            else storage_path,
            storage_filesystem=arrow_filesystem(storage_path),
            failure_config=FailureConfig(max_failures=cfg.max_failures),
            checkpoint_config=CheckpointConfig(
                num_to_keep=2,
                checkpoint_score_attribute="selection_score",
                checkpoint_score_order="max",
            ),
        ),
        datasets={"train": train_ds, "valid": valid_ds},
        dataset_config=ray.train.DataConfig(
            datasets_to_split=["train"], execution_options=ordered_ingest_options()
        ),
    )
    # Ray Train V2: fit() raises TrainingFailedError (WorkerGroupError / ControllerError) once
    # the restarts allowed by max_failures are spent; a run that recovered returns normally.
    with controller_poll_interval():
        if progress is None:
            result = trainer.fit()
        else:
            with _EpochWatcher(cfg.out, progress):
                result = trainer.fit()
    if result.error:  # Ray Train V1 (RAY_TRAIN_V2_ENABLED=0) returns the error instead
        raise result.error
    best = (
        result.get_best_checkpoint("selection_score", "max")
        if result.best_checkpoints and cfg.select_checkpoint == "best"
        else result.checkpoint  # the latest: Ray Train never deletes it
    )
    if best is None:
        raise RuntimeError("training produced no checkpoint")
    with best.as_directory() as ckpt_dir:
        state = torch.load(
            os.path.join(ckpt_dir, "state.pt"), map_location="cpu", weights_only=True
        )
    model = build_model(cfg.model, len(info.labels), input_shape, **hparams)
    model.load_state_dict(state["model"])
    model.eval()

    y_valid, p_valid = predict(
        model, valid_ds.iter_torch_batches(batch_size=128), torch.device("cpu"), False
    )
    tuning = (
        tune_thresholds_pooled(
            y_valid > 0.5, p_valid, info.labels, target_precision=cfg.target_precision,
            min_positives=cfg.threshold_min_positives,
        )
        if len(y_valid)
        else None
    )
    thresholds = tuning.thresholds if tuning else {m: 0.5 for m in info.labels}
    history = _read_metrics(cfg.out)
    bundle = ModelBundle(
        architecture=cfg.model,
        hparams=hparams,
        state_dict=model.state_dict(),
        labels=info.labels,
        label_names=dict(info.vocabulary),
        caption_text=captions.texts,
        thresholds={m: float(v) for m, v in thresholds.items()},
        feature_config=info.feature_config,
        dataset_digest=shards.dataset_digest(cfg.data),
        metrics={
            "best_valid_map": float(state["best_map"]),
            "best_epoch": int(state["epoch"]),
            "history": history,
            "thresholds": {
                "pooled": tuning.pooled if tuning else None,
                "fallback": list(tuning.fallback) if tuning else list(info.labels),
                "valid_positives": tuning.positives if tuning else {},
                "min_positives": cfg.threshold_min_positives,
            },
        },
        training={
            **cfg.to_dict(), "hparams": hparams, "dataset_augmentation": info.augmentation,
            "captions_derived": captions.derived, "captions_never": captions.never,
            **({"distillation": distillation} if distillation else {}),
            **({"init_from": init_record} if init_record else {}),
        },
        gate_dbfs=cfg.gate_dbfs,
    )
    save_bundle(bundle, storage.join(cfg.out, BUNDLE_NAME))
    return bundle


def _read_metrics(out: str) -> list[dict]:
    uri = storage.join(out, METRICS_NAME)
    if not storage.exists(uri):
        return []
    return [json.loads(line) for line in storage.read_text(uri).splitlines() if line.strip()]
