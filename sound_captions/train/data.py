"""Dataset shards → what the train loop reads: Ray datasets of one split, multi-hot targets
(labels, and the teacher's scores when distilling), context groups, the class-imbalance weights."""

from __future__ import annotations

import logging
import os

import numpy as np

from sound_captions import storage
from sound_captions.dataset import shards
from sound_captions.features import FeatureConfig

log = logging.getLogger(__name__)


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


def distill_targets(batch: dict, rows: np.ndarray) -> dict:
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
        **distill_targets(batch, rows),
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


def strip_scheme(uri: str) -> str:
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
        **distill_targets(group, keep),
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
    paths = [strip_scheme(u) for u in shards.shard_uris(root, info)]
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


def label_pos_weights(info: shards.DatasetInfo) -> list[float]:
    """Per-label negatives/positives among training windows (clipped), against class imbalance."""
    train = info.counts.get("train", {})
    total = max(int(train.get("windows", 0)), 1)
    weights = []
    for mid in info.labels:
        pos = int(train.get("labels", {}).get(mid, {}).get("windows", 0))
        weights.append(float(np.clip((total - pos) / max(pos, 1), 1.0, 50.0)))
    return weights


def ordered_ingest_options():
    """Ray Train's default ingest options with ``preserve_order``: with one worker the batches
    (and so the weights) depend only on the seed. With several workers the split of blocks
    between them still follows which worker asks first, so such runs are not bit-reproducible."""
    import ray.train

    options = ray.train.DataConfig.default_ingest_options()
    options.preserve_order = True
    return options
