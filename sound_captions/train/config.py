"""What a training run is given: ``TrainConfig`` (the same keys on the CLI and in ``jobs/``), and the names of what it writes."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

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
