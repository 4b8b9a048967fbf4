"""What a training run is given: ``TrainConfig`` (the same keys on the CLI and in ``jobs/``), and the names of what it writes."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Literal

log = logging.getLogger(__name__)


BUNDLE_NAME = "model.bundle"
METRICS_NAME = "metrics.jsonl"


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; the same keys on the CLI and in ``jobs/`` configs
    (``train``'s options are made from these fields and this text, see ``cli_options.py``).

    Attributes:
        data: dataset folder (local or s3://).
        out: run folder for checkpoints, metrics and model.bundle.
        model: architecture from the model registry (baseline, compact, mobilenet, resnet18, ...).
        hparams: model hyper-parameters (JSON object on the CLI).
        epochs: epochs to train at most.
        batch_size: training batch (windows) per worker.
        learning_rate: AdamW learning rate.
        weight_decay: AdamW weight decay.
        workers: Ray Train workers.
        gpus_per_worker: GPUs per worker (0: CPU training).
        cpus_per_worker: CPUs per worker.
        seed: seed of initialisation, shuffling and augmentation.
        in_memory: hold the dataset in Ray's object store (else stream it from the shards).
        patience: early stopping: epochs without a better selection score (validation mAP, ties
            broken by lower loss); 0: off.
        select_checkpoint: which epoch's weights become the bundle: best (the selection score on
            the validation split) or last (where validation labels are noisy, as in dataset
            clean's fold models).
        max_failures: worker failures to recover from (from the last checkpoint).
        balance_classes: BCE pos_weight = negatives/positives per label, clipped to [1, 50].
        target_precision: per-label thresholds are tuned on validation data to this precision.
        threshold_min_positives: a label with fewer positive validation windows gets the pooled
            threshold.
        mixed_precision: autocast + GradScaler on CUDA only.
        max_steps_per_epoch: cap on the steps of an epoch (smoke tests).
        shuffle_buffer_rows: rows shuffled among per epoch (the shards keep a class's clips
            together).
        augment: batch augmentation (BatchAugmentConfig fields; JSON on the CLI).
        gate_dbfs: energy gate recorded in the bundle: seconds quieter than this (dBFS) are never
            captioned.
        teacher: distil from this model bundle: its per-second probabilities become soft targets
            (docs/pretrained.md).
        unlabelled: your own media for the teacher to label (folders, s3:// prefixes, URL lists).
        label_weight: with a teacher: weight of the loss against the labels.
        distill_weight: with a teacher: weight of the loss against the teacher.
        init_from: start from this bundle's weights (fine-tuning): its architecture and
            hyper-parameters are used, its features must be the dataset's; the output rows of
            shared labels are kept, new labels start fresh.
    """

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
    select_checkpoint: Literal["best", "last"] = "best"
    max_failures: int = 2
    balance_classes: bool = True
    target_precision: float = 0.9
    threshold_min_positives: int = 5  # fewer positive validation windows: pooled threshold
    mixed_precision: bool = True
    max_steps_per_epoch: int | None = None
    # Rows the train loop shuffles among each epoch. The shards keep the build's order (a clip's
    # seconds, and often a class's clips, together); Ray fills the buffer with whole blocks, so
    # this matters where a split spans many small blocks. 8192 rows of the default 64×64 float16 ≈ 64 MB (128×128: 256 MB)
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
    init_from: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)
