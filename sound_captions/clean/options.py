"""How ``dataset clean`` examines a dataset (``CleanConfig``): the same fields on the CLI
(``cli_options``) and in code. Kept apart from the stage modules so that the CLI can make its
options without importing them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class CleanConfig:
    """How ``dataset clean`` makes its out-of-fold predictions.

    Attributes:
        folds: k of the k-fold split over clips (each model is trained on k−1 folds).
        model: architecture from the model registry (small and fast by default).
        hparams: model hyper-parameters.
        epochs: epochs per fold model (no early stopping: the validation labels are as noisy as
            the rest; the last epoch's weights score the held-out fold).
        batch_size: training batch (windows).
        valid_fraction: share of each fold's training clips kept for validation (the fold
            model's thresholds and reported validation mAP).
        splits: the dataset splits whose clips are examined (the others are left alone).
        seed: seed of the folds, the validation clips and the training.
        workers: Ray Train workers per fold model.
        cpus_per_worker: CPUs per worker.
    """

    folds: int = 3
    model: str = "compact"
    hparams: dict = field(default_factory=dict)
    epochs: int = 24
    batch_size: int = 32
    valid_fraction: float = 0.15
    splits: tuple[str, ...] = ("train", "valid", "test")
    seed: int = 0
    workers: int = 1
    cpus_per_worker: float = 1.0

    def __post_init__(self):
        if self.folds < 2:
            raise ValueError(f"folds must be at least 2, got {self.folds}")
        if not self.splits or any(s not in SPLITS for s in self.splits):
            raise ValueError(f"splits must be some of {', '.join(SPLITS)}, got {list(self.splits)}")
        if not 0.0 < self.valid_fraction < 0.5:
            raise ValueError(f"valid_fraction must be in (0, 0.5), got {self.valid_fraction}")

    def to_dict(self) -> dict:
        return {**asdict(self), "splits": list(self.splits)}

    def key(self) -> dict:
        """What the fold scores depend on (not the resources they were made with)."""
        return {k: v for k, v in self.to_dict().items() if k not in ("workers", "cpus_per_worker")}
