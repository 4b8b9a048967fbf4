"""How a dataset is built (``BuildOptions``): the CLI's ``dataset build`` options and the
``build_dataset`` job's YAML keys are made from these fields (see ``cli_options.py``).

The feature and augmentation configs load on first use, so that reading these options (the
CLI's option list) imports neither torch nor Ray.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sound_captions.dataset.augmentation import BuildAugmentConfig
    from sound_captions.features import FeatureConfig


def _default_features() -> FeatureConfig:
    from sound_captions.features import FeatureConfig

    return FeatureConfig()


def _no_augmentation() -> BuildAugmentConfig:
    from sound_captions.dataset.augmentation import BuildAugmentConfig

    return BuildAugmentConfig()


@dataclass(frozen=True)
class BuildOptions:
    """How a dataset is built. Resource figures are per task (Ray logical CPUs).

    Attributes:
        feature_config: the log-mel front-end (``--features`` preset on the CLI).
        split_fractions: train, valid and test fractions, by clip.
        seed: seed of the split (and, on the CLI, of the selection).
        target_shard_mb: target shard size in MB (uncompressed).
        decode_cpus: CPUs of one decode task.
        feature_cpus: CPUs of one spectrogram task.
        feature_batch_size: windows per spectrogram batch.
        overwrite: replace a finished dataset of other requests or options at the output.
        ffmpeg: ffmpeg binary (default: imageio-ffmpeg's), for decoding and downloads.
        fetch_actors: fetch actors (one per node on a cluster; pacing is per actor).
        fetch_concurrency: downloads at once per fetch actor.
        fetch_cpus: CPUs of one fetch actor.
        write_cpus: CPUs of one shard write task.
        items_per_block: clips per Ray Data block between the fetch and decode stages.
        augment: train-split augmentation (copies, overlap, "together").
        event_min_overlap_s: a clip with event times (a strong-label TSV, an events manifest): an
            event labels second k when it overlaps [k, k+1) by at least this many seconds.
    """

    feature_config: FeatureConfig = field(default_factory=_default_features)
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    target_shard_mb: float = 128
    decode_cpus: float = 1.0
    feature_cpus: float = 1.0
    feature_batch_size: int = 64
    overwrite: bool = False
    ffmpeg: str | None = None
    fetch_actors: int = 1
    fetch_concurrency: int = 4
    fetch_cpus: float = 0.25
    write_cpus: float = 0.25
    items_per_block: int = 4
    augment: BuildAugmentConfig = field(default_factory=_no_augmentation)  # train split only
    event_min_overlap_s: float = 0.5

    def __post_init__(self) -> None:
        if self.fetch_actors < 1 or self.fetch_concurrency < 1 or self.items_per_block < 1:
            raise ValueError("fetch_actors, fetch_concurrency and items_per_block must be >= 1")
        if not 0.0 < self.event_min_overlap_s <= 1.0:
            raise ValueError(f"event_min_overlap_s must be in (0, 1], got {self.event_min_overlap_s}")
        if self.target_shard_mb <= 0:
            raise ValueError(f"target_shard_mb must be > 0, got {self.target_shard_mb}")
