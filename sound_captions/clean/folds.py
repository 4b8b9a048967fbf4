"""Dataset → out-of-fold per-second scores: k models, each trained (the project's own ``train``)
on the clips of the other folds and scoring the clips of its own, which it never saw.

Only the clips' own seconds take part (``augment == "original"``): an augmented copy or a
"together" sequence holding a held-out clip would leak it into training. Folds are dealt by
clip, stratified by label set, seeded. Each fold is a dataset of its own under
``<work>/fold-<i>/data`` (held-out clips: split ``test``; a seeded share of the rest:
``valid``, for the fold model's reported mAP and thresholds: no early stopping, its labels are
as noisy as the rest), so that fold's training is a plain ``train`` run; its scores are kept in ``<work>/fold-<i>/scores.parquet`` and a rerun with the same key
(dataset digest, settings, folds) reuses them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sound_captions import storage
from sound_captions.clean.options import CleanConfig
from sound_captions.dataset import shards
from sound_captions.dataset.rewrite import rewrite_dataset

log = logging.getLogger(__name__)


class CleanInputError(ValueError):
    """The dataset cannot be examined as asked (too few clips in the examined splits)."""

ORIGINAL = "original"
SCORES = "scores.parquet"
KEY = "key.json"


def clip_label_sets(data_uri: str, splits: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """clip id → the sorted union of its own seconds' labels, for the clips of ``splits``."""
    info = shards.load_dataset_info(data_uri)
    out: dict[str, set[str]] = {}
    for uri in shards.shard_uris(data_uri, info):
        table = own_seconds(shards.read_table(uri).select(["clip_id", "labels", "split", "augment"]), splits)
        for clip_id, labels in zip(table.column("clip_id").to_pylist(), table.column("labels").to_pylist(), strict=True):
            out.setdefault(clip_id, set()).update(labels or ())
    return {c: tuple(sorted(v)) for c, v in out.items()}


def own_seconds(table: pa.Table, splits: tuple[str, ...]) -> pa.Table:
    """The rows of the clips' own audio (no augmented copy, no "together" sequence) in ``splits``."""
    keep = pc.and_(pc.equal(table.column("augment"), ORIGINAL), pc.is_in(table.column("split"), pa.array(list(splits))))
    return table.filter(keep)


def assign_folds(clip_labels: dict[str, tuple[str, ...]], folds: int, valid_fraction: float, seed: int) -> dict[str, tuple[int, bool]]:
    """clip id → (fold, kept for validation when training the other folds' models).

    Clips are dealt round-robin within each label set (shuffled, seeded), so every fold gets its
    share of each class; every ``1/valid_fraction``-th clip dealt to a fold is a validation
    clip."""
    rng = random.Random(seed)
    groups: dict[tuple[str, ...], list[str]] = {}
    for clip_id in sorted(clip_labels):
        groups.setdefault(clip_labels[clip_id], []).append(clip_id)
    out: dict[str, tuple[int, bool]] = {}
    every = max(2, round(1.0 / valid_fraction))
    dealt = 0
    for key in sorted(groups):
        members = groups[key]
        rng.shuffle(members)
        for clip_id in members:
            fold = dealt % folds
            out[clip_id] = (fold, (dealt // folds) % every == every - 1)
            dealt += 1
    return out


def fold_transform(assignment: dict[str, tuple[int, bool]], fold: int, splits: tuple[str, ...]):
    """Shard rows → fold ``fold``'s rows: held-out clips ``test``, the others ``train`` or
    ``valid`` (the clips' own seconds of the examined splits only)."""

    def transform(table: pa.Table) -> pa.Table:
        table = own_seconds(table, splits)
        ids = table.column("clip_id").to_pylist()
        split = ["test" if assignment[c][0] == fold else ("valid" if assignment[c][1] else "train") for c in ids]
        return table.set_column(table.schema.get_field_index("split"), "split", pa.array(split, pa.string()))

    return transform


@dataclass
class OutOfFold:
    """Per-second out-of-fold scores of every examined clip.

    ``meta``: columns ``clip_id``, ``second``, ``start_s``, ``source``, ``labels`` (n rows);
    ``scores``: (n, L) float32 in ``labels`` order; ``fold``: (n,) the fold that scored the row."""

    labels: list[str]
    meta: pa.Table
    scores: np.ndarray
    fold: np.ndarray


def out_of_fold_scores(data_uri: str, work: str, cfg: CleanConfig, progress: Callable[[str], None] = log.info) -> OutOfFold:
    """Train ``cfg.folds`` models (Ray Train, current cluster) and score each one's held-out
    clips; reuses the folds a previous run with the same key finished."""
    from sound_captions.bundle import load_bundle
    from sound_captions.evaluate import score_dataset
    from sound_captions.train import BUNDLE_NAME, TrainConfig, train

    info = shards.load_dataset_info(data_uri)
    clip_labels = clip_label_sets(data_uri, cfg.splits)
    if len(clip_labels) < cfg.folds * 2:
        raise CleanInputError(f"{data_uri}: {len(clip_labels)} clips in splits {list(cfg.splits)}, too few for {cfg.folds} folds")
    assignment = assign_folds(clip_labels, cfg.folds, cfg.valid_fraction, cfg.seed)
    key = {
        "dataset_digest": shards.dataset_digest(data_uri), "config": cfg.key(),
        "assignment": hashlib.sha256(json.dumps(sorted(assignment.items())).encode()).hexdigest(),
    }  # fmt: skip
    parts = []
    for fold in range(cfg.folds):
        folder = storage.join(work, f"fold-{fold}")
        scores_uri = storage.join(folder, SCORES)
        key_uri = storage.join(folder, KEY)
        if storage.exists(scores_uri) and storage.exists(key_uri) and json.loads(storage.read_text(key_uri)) == key:
            progress(f"fold {fold + 1}/{cfg.folds}: scores of an earlier run reused")
            parts.append(shards.read_table(scores_uri))
            continue
        if storage.is_s3(folder) or storage.exists(folder):  # an earlier run's fold that did not finish
            for stale in list(storage.list_files(folder)):
                storage.delete(stale.uri)
        fold_data = storage.join(folder, "data")
        rewrite_dataset(data_uri, fold_data, fold_transform(assignment, fold, cfg.splits), provenance={"fold": fold, "folds": cfg.folds})
        held_out = sum(1 for f, _ in assignment.values() if f == fold)
        progress(f"fold {fold + 1}/{cfg.folds}: training {cfg.model} on {len(assignment) - held_out} clips, scoring {held_out}")
        run = storage.join(folder, "run")
        train(
            TrainConfig(
                data=fold_data, out=run, model=cfg.model, hparams=dict(cfg.hparams), epochs=cfg.epochs,
                batch_size=cfg.batch_size, seed=cfg.seed + fold, workers=cfg.workers, cpus_per_worker=cfg.cpus_per_worker,
                # the validation clips' labels are as noisy as the rest: no early stopping on
                # them, and the last epoch's weights (a fixed recipe, as cross-validation wants)
                patience=0, select_checkpoint="last",
            ),
            name=f"clean-fold-{fold}",
        )
        bundle = load_bundle(storage.join(run, BUNDLE_NAME))
        given, scores, meta = score_dataset(bundle, fold_data, split="test")
        table = pa.table({
            "clip_id": meta.column("clip_id"), "second": meta.column("second"), "start_s": meta.column("start_s"),
            "source": meta.column("source"),
            "labels": pa.array([[bundle.labels[j] for j in np.flatnonzero(row)] for row in given], pa.list_(pa.string())),
            "fold": pa.array(np.full(meta.num_rows, fold, dtype=np.int32)),
            "scores": pa.FixedSizeListArray.from_arrays(pa.array(scores.astype(np.float32).ravel()), len(info.labels)),
        })  # fmt: skip
        shards.write_table(table, scores_uri)
        storage.write_text(key_uri, json.dumps(key))
        parts.append(table)
    table = pa.concat_tables(parts).sort_by([("clip_id", "ascending"), ("start_s", "ascending")])
    scores = np.asarray(table.column("scores").combine_chunks().flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
    return OutOfFold(
        labels=info.labels,
        meta=table.select(["clip_id", "second", "start_s", "source", "labels"]),
        scores=scores.reshape(table.num_rows, len(info.labels)),
        fold=table.column("fold").to_numpy(),
    )

