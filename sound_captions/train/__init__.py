"""Training: dataset shards → a model bundle, with Ray Train on CPU or GPU workers.

    config.py  what a run is given (``TrainConfig``) and the names of what it writes
    data.py    shards → the datasets, targets and weights the loop reads
    loop.py    the per-worker loop: epochs, loss, validation, metrics, checkpoints
    run.py     the driver: starts Ray Train, follows the epochs, writes the bundle
"""

from sound_captions.train.config import BUNDLE_NAME, METRICS_NAME, TrainConfig
from sound_captions.train.run import epoch_line, train

__all__ = ["BUNDLE_NAME", "METRICS_NAME", "TrainConfig", "epoch_line", "train"]
