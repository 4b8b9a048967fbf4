"""Shards → trained model bundle, with Ray Train's ``TorchTrainer`` on CPU or GPU workers.

The train loop reads the dataset through Ray Data (``iter_torch_batches``), optionally held in
the object store (the study's tip: I/O was its bottleneck), and writes per epoch: metrics to
``<run>/metrics.jsonl`` and a checkpoint to Ray Train's storage under ``<run>/ray``. A worker
failure restarts the group from the last checkpoint (``FailureConfig``). At the end the best
checkpoint (validation mAP) becomes ``<run>/model.bundle`` with per-label thresholds tuned on the
validation split.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from sound_captions import storage
from sound_captions.augment import BatchAugmentConfig, apply_batch_augment
from sound_captions.bundle import ModelBundle, save_bundle
from sound_captions.caption.vocabulary import CaptionVocabulary
from sound_captions.dataset import shards
from sound_captions.features import FeatureConfig, pin_torch_threads, to_model_input
from sound_captions.metrics import mean_average_precision, tune_thresholds_pooled

log = logging.getLogger(__name__)

BUNDLE_NAME = "model.bundle"
METRICS_NAME = "metrics.jsonl"


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; the same keys on the CLI and in ``jobs/`` configs."""

    data: str
    out: str
    model: str = "baseline"
    hparams: dict = field(default_factory=dict)
    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    workers: int = 1
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    seed: int = 0
    in_memory: bool = True
    patience: int = 5
    max_failures: int = 2
    balance_classes: bool = True
    target_precision: float = 0.9
    threshold_min_positives: int = 5  # fewer positive validation windows: pooled threshold
    mixed_precision: bool = True
    max_steps_per_epoch: int | None = None
    # Rows the train loop shuffles among each epoch. The shards keep the build's order (a clip's
    # seconds, and often a class's clips, together); Ray fills the buffer with whole blocks, so
    # this matters where a split spans many small blocks. 8192 rows of 128×128 float16 ≈ 256 MB
    # (×3 with a context of 1).
    shuffle_buffer_rows: int = 8192
    augment: dict = field(default_factory=dict)  # BatchAugmentConfig fields; recorded in the bundle
    gate_dbfs: float | None = None  # energy gate recorded in the bundle (caption: quieter seconds get no caption)
    # Distillation (sound_captions.distill): a teacher bundle's probabilities as soft targets,
    # optionally on unlabelled media; loss = label_weight · BCE(labels) + distill_weight · BCE(teacher).
    teacher: str | None = None
    unlabelled: list[str] = field(default_factory=list)
    label_weight: float = 0.1
    distill_weight: float = 0.9

    def to_dict(self) -> dict:
        return asdict(self)


def label_matrix(label_lists, vocabulary: list[str]) -> np.ndarray:
    """Rows of label mids → multi-hot (n, L) float32 in vocabulary order (unknown mids ignored)."""
    index = {m: i for i, m in enumerate(vocabulary)}
    out = np.zeros((len(label_lists), len(vocabulary)), dtype=np.float32)
    for row, labels in enumerate(label_lists):
        for m in labels if labels is not None else ():
            j = index.get(str(m))
            if j is not None:
                out[row, j] = 1.0
    return out


def _targets(batch: dict, rows: np.ndarray) -> dict:
    """A distillation dataset's extra targets: ``t`` (n, L) teacher probabilities and ``u``
    (n, 1), 1 for a row without labels (unlabelled media); nothing for a plain dataset."""
    if "teacher" not in batch:
        return {}
    teacher = np.asarray(batch["teacher"], dtype=np.float32)
    return {
        "t": teacher[rows].reshape(len(rows), teacher.shape[-1]),  # (0, L) for a group without train rows
        "u": (~np.asarray(batch["labelled"], dtype=bool)[rows]).astype(np.float32).reshape(len(rows), 1),
    }


def to_training_batch(batch: dict, vocabulary: list[str], split: str | None = None) -> dict:
    """Ray Data stage: shard rows → ``{"x": (n, H, W, C) float16, "y": (n, L) float32}``
    (and ``t``, ``u`` from a distillation dataset)."""
    keep = (
        np.ones(len(batch["second"]), dtype=bool)
        if split is None
        else np.asarray(batch["split"] == split)
    )
    rows = np.flatnonzero(keep)
    return {
        "x": np.asarray(batch["spectrogram"])[keep],
        "y": label_matrix([batch["labels"][i] for i in rows], vocabulary),
        **_targets(batch, rows),
    }


def arrow_filesystem(uri: str):
    """A pyarrow filesystem for ``uri`` honouring ``AWS_ENDPOINT_URL`` (None for local paths)."""
    if not storage.is_s3(uri):
        return None
    import pyarrow.fs as pafs

    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    kwargs = {
        "region": os.environ.get("AWS_DEFAULT_REGION")
        or os.environ.get("AWS_REGION")
        or "us-east-1"
    }
    if endpoint:
        scheme, _, host = endpoint.partition("://")
        kwargs.update(endpoint_override=host or endpoint, scheme=scheme if host else "https")
    return pafs.S3FileSystem(**kwargs)


def _strip_scheme(uri: str) -> str:
    return uri[len("s3://") :] if storage.is_s3(uri) else str(storage.local_path(uri))


def to_context_batch(group: dict, vocabulary: list[str], split: str, feature_config: dict, context: int) -> dict:
    """Ray Data ``map_groups`` stage: all rows of one clip → ``{"x": (n, H, K·W, C), "y"}`` for
    the rows of ``split``, each second with the ``context`` seconds around it side by side
    (``sound_captions.context``: same clip and augment version; silence where there is none)."""
    from sound_captions.context import neighbour_index, silence_spectrogram, stack_context

    keep = np.flatnonzero(np.asarray(group["split"] == split))
    spec = np.asarray(group["spectrogram"])
    index = neighbour_index(group["clip_id"], group["augment"], group["start_s"], context)[keep]
    silence = silence_spectrogram(FeatureConfig.from_dict(feature_config)).astype(spec.dtype)
    return {
        "x": stack_context(spec, index, silence),
        "y": label_matrix([group["labels"][i] for i in keep], vocabulary),
        **_targets(group, keep),
    }


def read_split(root: str, info: shards.DatasetInfo, split: str, *, in_memory: bool, context: int = 0, distill: bool = False):
    """A Ray dataset of ``{"x", "y"}`` batches for one split of a dataset.

    Rows come in shard order (``preserve_order`` on this dataset's own context, not the
    process-wide one), so that a seeded run sees the same batches every time; the train loop
    shuffles locally with a seeded buffer. With ``context`` > 0 (a context model) rows are
    grouped by clip first, so that each example carries its neighbouring seconds (``x`` is
    then 2·context + 1 windows wide: the object store holds that many times the spectrograms).
    """
    import ray

    fs = arrow_filesystem(root)
    paths = [_strip_scheme(u) for u in shards.shard_uris(root, info)]
    columns = ["second", "labels", "split", "spectrogram"]
    if distill and split == "train":  # the teacher's targets (sound_captions.distill)
        columns += ["teacher", "labelled"]
    if context:
        columns += ["clip_id", "start_s", "augment"]
    ds = ray.data.read_parquet(paths, filesystem=fs).select_columns(columns)
    if context:
        ds = ds.groupby("clip_id").map_groups(
            to_context_batch,
            fn_kwargs={"vocabulary": info.labels, "split": split, "feature_config": info.feature_config.to_dict(), "context": int(context)},
            batch_format="numpy",
        )
    else:
        ds = ds.map_batches(
            to_training_batch,
            fn_kwargs={"vocabulary": info.labels, "split": split},
            batch_format="numpy",
        )
    ds.context.execution_options.preserve_order = True
    return ds.materialize() if in_memory else ds


def _predict(model, batches, device, autocast: bool) -> tuple[np.ndarray, np.ndarray]:
    ys, ps = [], []
    model.eval()
    with torch.no_grad():
        for batch in batches:
            x = to_model_input(batch["x"]).to(device)
            with torch.autocast(device_type=device.type, enabled=autocast):
                logits = model(x)
            ps.append(torch.sigmoid(logits.float()).cpu().numpy())
            ys.append(
                batch["y"].cpu().numpy()
                if isinstance(batch["y"], torch.Tensor)
                else np.asarray(batch["y"])
            )
    if not ys:
        return np.zeros((0, 0)), np.zeros((0, 0))
    return np.concatenate(ys), np.concatenate(ps)


def selection_score(valid_map: float, valid_loss: float) -> float:
    """What early stopping and checkpoint selection maximise: mAP, ties broken by lower loss."""
    return float(valid_map) - 0.01 * float(valid_loss)


def _bce(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def distillation_loss(
    logits: torch.Tensor, y: torch.Tensor, t: torch.Tensor, unlabelled: torch.Tensor, mask: torch.Tensor,
    *, pos_weight: torch.Tensor | None, label_weight: float, distill_weight: float,
) -> torch.Tensor:
    """``label_weight`` · BCE against the labels (rows with labels only; ``pos_weight`` as in
    plain training) + ``distill_weight`` · BCE against the teacher's probabilities ``t`` (the
    label columns ``mask`` the teacher has). ``unlabelled``: (N, 1) > 0 for rows without labels
    (or mixed with one by augmentation)."""
    f = torch.nn.functional
    labelled = (unlabelled[:, 0] <= 0).to(logits.dtype)
    per_row = f.binary_cross_entropy_with_logits(logits, y, pos_weight=pos_weight, reduction="none").mean(dim=1)
    label_term = (per_row * labelled).sum() / labelled.sum().clamp(min=1.0)
    distill_term = (
        f.binary_cross_entropy_with_logits(logits[:, mask], t[:, mask].clamp(0.0, 1.0))
        if bool(mask.any()) else logits.sum() * 0.0
    )
    return label_weight * label_term + distill_weight * distill_term


def train_loop_per_worker(config: dict) -> None:
    """Runs on every Ray Train worker."""
    import ray.train
    import ray.train.torch

    from sound_captions.models import build_model

    cfg = TrainConfig(**config["train"])
    vocabulary: list[str] = config["vocabulary"]
    input_shape = tuple(config["input_shape"])
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    torch.manual_seed(cfg.seed + rank)
    np.random.seed(cfg.seed + rank)
    if not torch.cuda.is_available():
        pin_torch_threads(cfg.cpus_per_worker)
    model = build_model(cfg.model, len(vocabulary), input_shape, **cfg.hparams)
    model = ray.train.torch.prepare_model(model)
    device = ray.train.torch.get_device()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay
    )
    pos_weight = (
        torch.tensor(config["pos_weight"], dtype=torch.float32, device=device)
        if cfg.balance_classes
        else None
    )
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    distill_mask = (
        torch.tensor(config["distill_mask"], dtype=torch.bool, device=device) if config.get("distill_mask") else None
    )
    use_amp = cfg.mixed_precision and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    augment = BatchAugmentConfig.from_dict(cfg.augment)
    generator = torch.Generator()  # CPU; augment moves its random draws to the batch's device

    start_epoch, best_map, best_score, bad_epochs = 0, -1.0, -float("inf"), 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as ckpt_dir:
            state = torch.load(
                os.path.join(ckpt_dir, "state.pt"), map_location=device, weights_only=True
            )
        target = model.module if hasattr(model, "module") else model
        target.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, best_map, bad_epochs = (
            state["epoch"] + 1,
            state["best_map"],
            state["bad_epochs"],
        )
        best_score = state["best_score"]
    attempt_start_epoch = (
        start_epoch  # > 0: this worker group resumed from the checkpoint of epoch start_epoch - 1
    )

    train_shard = ray.train.get_dataset_shard("train")
    valid_shard = ray.train.get_dataset_shard("valid")
    for epoch in range(start_epoch, cfg.epochs):
        epoch_started = time.perf_counter()
        model.train()
        # Seeded per epoch, so a run resumed from a checkpoint repeats the same augmentation.
        generator.manual_seed(cfg.seed * 1_000_003 + rank * 10_007 + epoch)
        # Dropout draws from torch's global generator: reseed it per epoch too (another stream),
        # so an epoch after a restart draws what it would have drawn without one.
        torch.manual_seed(
            int(np.random.SeedSequence([cfg.seed, rank, epoch, 1]).generate_state(1)[0])
        )
        total, count = 0.0, 0
        batches = train_shard.iter_torch_batches(
            batch_size=cfg.batch_size,
            drop_last=True,  # batch norm needs more than one example
            local_shuffle_buffer_size=max(cfg.batch_size * 8, int(cfg.shuffle_buffer_rows)),
            local_shuffle_seed=cfg.seed + epoch,
        )
        for step, batch in enumerate(batches):
            if cfg.max_steps_per_epoch is not None and step >= cfg.max_steps_per_epoch:
                break
            x = to_model_input(batch["x"]).to(device)
            y = batch["y"].to(device)
            n_labels = y.shape[1]
            if distill_mask is not None:  # augmentation mixes the teacher's targets like the labels
                y = torch.cat([y, batch["t"].to(device), batch["u"].to(device)], dim=1)
            if augment.enabled:
                x, y = apply_batch_augment(x, y, augment, generator, label_columns=n_labels)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device_type=device.type, enabled=use_amp):
                logits = model(x).float()
                if distill_mask is None:
                    loss = loss_fn(logits, y)
                else:
                    loss = distillation_loss(
                        logits, y[:, :n_labels], y[:, n_labels : 2 * n_labels], y[:, 2 * n_labels :], distill_mask,
                        pos_weight=pos_weight, label_weight=cfg.label_weight, distill_weight=cfg.distill_weight,
                    )
                    y = y[:, :n_labels]
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            total += float(loss.detach()) * len(y)
            count += len(y)
        y_valid, p_valid = _predict(
            model,
            valid_shard.iter_torch_batches(batch_size=max(cfg.batch_size, 64)),
            device,
            use_amp,
        )
        valid_map = mean_average_precision(y_valid > 0.5, p_valid) if len(y_valid) else float("nan")
        valid_loss = _bce(y_valid, p_valid) if len(y_valid) else float("nan")
        # mAP saturates on easy data; the validation loss breaks its ties, so the checkpoint
        # kept is the one whose probabilities are also best calibrated.
        score = selection_score(valid_map, valid_loss)
        improved = score == score and score > best_score + 1e-9
        best_score = score if improved else best_score
        best_map = valid_map if improved else best_map
        bad_epochs = 0 if improved else bad_epochs + 1
        metrics = {
            "epoch": epoch,
            "train_loss": total / max(count, 1),
            "valid_loss": valid_loss,
            "valid_map": valid_map,
            "selection_score": score,
            "best_valid_map": best_map,
            "train_samples": count,
            "attempt_start_epoch": attempt_start_epoch,
            "epoch_s": round(time.perf_counter() - epoch_started, 3),
        }
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = None
            if rank == 0:
                target = model.module if hasattr(model, "module") else model
                torch.save(
                    {
                        "model": target.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "epoch": epoch,
                        "best_map": best_map,
                        "best_score": best_score,
                        "bad_epochs": bad_epochs,
                        "valid_map": valid_map,
                    },
                    os.path.join(tmp, "state.pt"),
                )
                ckpt = ray.train.Checkpoint.from_directory(tmp)
                _append_metrics(cfg.out, metrics)
            ray.train.report(metrics, checkpoint=ckpt)
        if cfg.patience and bad_epochs >= cfg.patience:
            break


def _append_metrics(out: str, metrics: dict) -> None:
    uri = storage.join(out, METRICS_NAME)
    previous = storage.read_text(uri) if storage.exists(uri) else ""
    kept = [
        line
        for line in previous.splitlines()
        if line.strip() and json.loads(line).get("epoch") != metrics["epoch"]
    ]
    storage.write_text(uri, "\n".join([*kept, json.dumps(metrics)]) + "\n")


def _pos_weight(info: shards.DatasetInfo) -> list[float]:
    """Per-label negatives/positives among training windows (clipped), against class imbalance."""
    train = info.counts.get("train", {})
    total = max(int(train.get("windows", 0)), 1)
    weights = []
    for mid in info.labels:
        pos = int(train.get("labels", {}).get(mid, {}).get("windows", 0))
        weights.append(float(np.clip((total - pos) / max(pos, 1), 1.0, 50.0)))
    return weights


def _ordered_ingest_options():
    """Ray Train's default ingest options with ``preserve_order``: with one worker the batches
    (and so the weights) depend only on the seed. With several workers the split of blocks
    between them still follows which worker asks first, so such runs are not bit-reproducible."""
    import ray.train

    options = ray.train.DataConfig.default_ingest_options()
    options.preserve_order = True
    return options


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

    info = shards.load_dataset_info(cfg.data)
    if not info.shards:
        raise ValueError(
            f"{cfg.data}: the dataset has no shards (did every item fail? see failures.parquet)"
        )
    h, w, c = info.feature_config.shape
    input_shape = (c, h, w)
    hparams = {**default_hparams(cfg.model), **cfg.hparams}
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
            "pos_weight": _pos_weight(info),
            # label columns the teacher has a target for
            "distill_mask": [m not in distillation["unmapped"] for m in info.labels] if distillation else None,
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
            storage_path=_strip_scheme(storage_path)
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
            datasets_to_split=["train"], execution_options=_ordered_ingest_options()
        ),
    )
    # Ray Train V2: fit() raises TrainingFailedError (WorkerGroupError / ControllerError) once
    # the restarts allowed by max_failures are spent; a run that recovered returns normally.
    if progress is None:
        result = trainer.fit()
    else:
        with _EpochWatcher(cfg.out, progress):
            result = trainer.fit()
    if result.error:  # Ray Train V1 (RAY_TRAIN_V2_ENABLED=0) returns the error instead
        raise result.error
    best = (
        result.get_best_checkpoint("selection_score", "max")
        if result.best_checkpoints
        else result.checkpoint
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

    y_valid, p_valid = _predict(
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
