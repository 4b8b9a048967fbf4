"""Training: dataset shards → a model bundle, with Ray Train on CPU or GPU workers.

    config.py  what a run is given (``TrainConfig``) and the names of what it writes
    data.py    shards → the datasets, targets and weights the loop reads
    loop.py    the per-worker loop: epochs, loss, validation, metrics, checkpoints
    run.py     the driver: starts Ray Train, follows the epochs, writes the bundle

``train`` and ``epoch_line`` load on first use, so that reading ``TrainConfig`` (the CLI's
option list) does not import torch and Ray.
"""

from sound_captions.train.config import BUNDLE_NAME, METRICS_NAME, TrainConfig

__all__ = ["BUNDLE_NAME", "METRICS_NAME", "TrainConfig", "epoch_line", "train"]


def __getattr__(name: str):
    if name in ("train", "epoch_line"):
        from sound_captions.train import run

        return getattr(run, name)
    raise AttributeError(f"module 'sound_captions.train' has no attribute {name!r}")
