"""The per-worker train loop (Ray Train): epochs, batch augmentation, the loss (labels and
distillation), validation, metrics.jsonl and checkpoints."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time

import numpy as np
import torch

from sound_captions import storage
from sound_captions.augment import BatchAugmentConfig, apply_batch_augment
from sound_captions.features import pin_torch_threads, to_model_input
from sound_captions.metrics import mean_average_precision
from sound_captions.train.config import METRICS_NAME, TrainConfig

log = logging.getLogger(__name__)


def predict(model, batches, device, autocast: bool) -> tuple[np.ndarray, np.ndarray]:
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
    if config.get("init_state") is not None:  # --init-from (a resumed run's checkpoint replaces it below)
        model.load_state_dict(config["init_state"])
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
        y_valid, p_valid = predict(
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
                append_metrics(cfg.out, metrics)
            ray.train.report(metrics, checkpoint=ckpt)
        if cfg.patience and bad_epochs >= cfg.patience:
            break


def append_metrics(out: str, metrics: dict) -> None:
    uri = storage.join(out, METRICS_NAME)
    previous = storage.read_text(uri) if storage.exists(uri) else ""
    kept = [
        line
        for line in previous.splitlines()
        if line.strip() and json.loads(line).get("epoch") != metrics["epoch"]
    ]
    storage.write_text(uri, "\n".join([*kept, json.dumps(metrics)]) + "\n")
