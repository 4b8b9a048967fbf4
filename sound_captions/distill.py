"""Distillation: a teacher bundle's per-second probabilities as soft targets for ``train``.

``train --teacher BUNDLE [--unlabelled DIR_OR_URI ...]`` first writes ``<out>/distill/``: a
dataset (``dataset.json`` + shards, the training dataset's vocabulary and features) holding

- every row of the training dataset, with two more columns: ``teacher`` (the teacher's
  probabilities mapped onto the student's labels) and ``labelled`` (true);
- one ``train`` row per second of each unlabelled medium, with no labels (``labelled`` false):
  the teacher's probabilities are its only targets (pseudo-labels).

It is computed once: a rerun with the same teacher, dataset and unlabelled inputs reuses it. The
loss is then ``label_weight · BCE(labels) + distill_weight · BCE(teacher)`` (EfficientAT's recipe:
0.1 and 0.9), the label term over labelled rows only, the teacher term over the labels the
teacher has (a student label absent from the teacher's takes the most confident of the teacher's
labels below it in the ontology; one with neither is learnt from labels alone).

Scoring the dataset's train windows needs a teacher with the dataset's feature config (the shards
hold spectrograms, not audio); unlabelled media are decoded here, so any teacher (a PANNs import
with its own front-end included) can label them: a dataset with only a labelled valid split (for
choosing the epoch and tuning thresholds) plus a folder of the library's own media is enough.
A teacher with an energy gate gives zero targets to the seconds of unlabelled media below its gate
(what it would caption there: nothing); the dataset's windows carry no level, so its train rows
get the teacher's scores as they are.

Scale: the teacher scores on the driver, one medium after another, on the CPU (or the GPU torch
finds): fine for a labelled dataset and a sample of a library; a large unlabelled library wants
the caption pipeline's Ray stages instead (not done yet).
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from sound_captions import reasons, storage
from sound_captions.bundle import ModelBundle, load_bundle
from sound_captions.dataset import shards
from sound_captions.features import FeatureConfig, compute_features, frame_windows, to_model_input
from sound_captions.ontology import Ontology

log = logging.getLogger(__name__)

DISTILL_DIR = "distill"
ROWS_PER_SHARD = 4096
TARGETS_FORMAT = 1  # bump when how targets are computed changes: older ones are then recomputed


class DistillationError(ValueError):
    """A teacher that cannot label this dataset (other features, no label in common)."""


@dataclass(frozen=True)
class LabelMap:
    """Student label j ← teacher columns ``sources[j]`` (max over them); empty: no target."""

    sources: tuple[tuple[int, ...], ...]
    student: tuple[str, ...]

    @property
    def mask(self) -> np.ndarray:
        return np.array([bool(s) for s in self.sources])

    def apply(self, teacher_scores: np.ndarray) -> np.ndarray:
        out = np.zeros((len(teacher_scores), len(self.sources)), dtype=np.float32)
        for j, cols in enumerate(self.sources):
            if cols:
                out[:, j] = teacher_scores[:, list(cols)].max(axis=1)
        return out

    def summary(self, teacher_labels: list[str]) -> dict:
        return {
            "mapped": {m: [teacher_labels[c] for c in cols] for m, cols in zip(self.student, self.sources, strict=True) if cols},
            "unmapped": [m for m, cols in zip(self.student, self.sources, strict=True) if not cols],
        }


def map_labels(student: list[str], teacher: list[str]) -> LabelMap:
    """Each student label from the same teacher label, else from the teacher's labels below it."""
    ontology = Ontology.load()
    index = {m: i for i, m in enumerate(teacher)}
    sources = []
    for mid in student:
        if mid in index:
            sources.append((index[mid],))
            continue
        below = ontology.descendants(mid, include_self=False) if mid in ontology.classes else set()
        sources.append(tuple(sorted(index[m] for m in below if m in index)))
    return LabelMap(tuple(sources), tuple(student))


def teacher_scores(teacher: ModelBundle, model: torch.nn.Module, features: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The teacher's probabilities (n, L_teacher) for the consecutive seconds of one medium."""
    from sound_captions.context import (
        per_second_outputs,
        score_embeddings,
        sequence_index,
        silence_embedding,
    )

    parts = []
    with torch.inference_mode():
        for start in range(0, len(features), batch_size):
            x = to_model_input(features[start : start + batch_size].astype(np.float32))
            parts.append(per_second_outputs(model, x, teacher.context).float())
    if not parts:
        return np.zeros((0, len(teacher.labels)), dtype=np.float32)
    out = torch.cat(parts)
    if teacher.context:
        silence = silence_embedding(model, teacher.feature_config)
        return score_embeddings(model, out, sequence_index(len(features), teacher.context), silence)
    return out.numpy().astype(np.float32)


def _with_targets(table: pa.Table, targets: np.ndarray, labelled: bool) -> pa.Table:
    """``table`` + ``teacher`` (fixed-shape float32 (L,), like the spectrograms) + ``labelled``."""
    # an explicit type: from_numpy_ndarray records a permutation, which Ray's shuffle cannot
    # turn into an empty table
    targets = np.ascontiguousarray(targets, dtype=np.float32)
    storage_array = pa.FixedSizeListArray.from_arrays(pa.array(targets.reshape(-1)), targets.shape[1])
    tensor = pa.ExtensionArray.from_storage(pa.fixed_shape_tensor(pa.float32(), [targets.shape[1]]), storage_array)
    table = table.append_column("teacher", tensor)
    return table.append_column("labelled", pa.array([labelled] * table.num_rows, pa.bool_()))


def _train_rows(uri: str) -> int:
    import io

    import pyarrow.parquet as pq

    split = pq.read_table(io.BytesIO(storage.read_bytes(uri)), columns=["split"], use_threads=False).column("split")
    return int(np.sum(split.to_numpy(zero_copy_only=False) == "train"))


def _unlabelled_items(inputs: list[str]):
    from sound_captions.caption.inputs import discover

    return discover(list(inputs)) if inputs else ([], [])


def _key(teacher_digest: str, data_digest: str, items, student_labels: list[str]) -> dict:
    """What the targets were computed from: equal keys, equal targets."""
    return {
        "format": TARGETS_FORMAT,
        "teacher_digest": teacher_digest,
        "dataset_digest": data_digest,
        "unlabelled": sorted([item.uri, item.version] for item in items),
        "student_labels": list(student_labels),
    }


def prepare_distillation(data_uri: str, out: str, teacher_uri: str, unlabelled: list[str] | None = None) -> tuple[str, dict]:
    """Write (or reuse) ``<out>/distill/`` for training on ``data_uri`` with ``teacher_uri``.

    Returns the distillation dataset's URI and a summary for the bundle (teacher digest, label
    mapping, rows, unlabelled media used and failed).
    """
    from sound_captions.audio import DecodeError, decode_audio
    from sound_captions.caption.fetch import FetchError, fetched
    from sound_captions.evaluate import score_dataset

    info = shards.load_dataset_info(data_uri)
    teacher = load_bundle(teacher_uri)
    labels = map_labels(info.labels, teacher.labels)
    if not labels.mask.any():
        raise DistillationError(f"teacher {teacher_uri} has none of the dataset's labels (nor any label below them)")
    teacher_digest = teacher.digest()
    items, failures = _unlabelled_items(unlabelled or [])
    root = storage.join(out, DISTILL_DIR)
    key = _key(teacher_digest, shards.dataset_digest(data_uri), items, info.labels)
    if storage.exists(storage.join(root, shards.DATASET_JSON)):
        done = shards.load_dataset_info(root)
        if done.selection.get("distillation", {}).get("key") == key:
            log.info("reusing the teacher's targets in %s", root)
            return root, done.selection["distillation"]["summary"]
        # other inputs: the completion mark goes first, so a crash below never leaves old
        # targets that a rerun with the old inputs would take for finished
        storage.delete(storage.join(root, shards.DATASET_JSON))
        for uri in [*shards.shard_uris(root, done), storage.join(root, shards.FAILURES)]:
            if storage.exists(uri):
                storage.delete(uri)

    failures_uri = storage.join(root, shards.FAILURES)
    if storage.exists(failures_uri):  # left by a run that did not finish
        storage.delete(failures_uri)
    model = teacher.build_model()
    cfg: FeatureConfig = info.feature_config
    rels: list[str] = []
    rows = 0
    shard_uris = shards.shard_uris(data_uri, info)
    n_train = sum(_train_rows(uri) for uri in shard_uris)
    if n_train and teacher.feature_config != cfg:
        raise DistillationError(
            f"teacher {teacher_uri} uses other features ({teacher.feature_config.to_dict()}) than the dataset "
            f"({cfg.to_dict()}): it cannot score the spectrograms of the dataset's train split; build the "
            "dataset with the teacher's features, or keep only a valid split and give the teacher unlabelled media"
        )
    # the teacher scores the train rows (shard order); the other splits keep their labels only
    mapped = labels.apply(score_dataset(teacher, data_uri, split="train")[1]) if n_train else None
    offset = 0
    for uri in shard_uris:
        table = shards.read_table(uri)
        if table.num_rows == 0:
            continue
        is_train = np.asarray(table.column("split").to_numpy(zero_copy_only=False) == "train")
        targets = np.zeros((table.num_rows, len(info.labels)), dtype=np.float32)
        if is_train.any():
            targets[is_train] = mapped[offset : offset + int(is_train.sum())]
            offset += int(is_train.sum())
        part = _with_targets(table, targets, labelled=True)
        rel = f"{shards.SHARD_DIR}/labelled-{uuid.uuid4().hex[:16]}.parquet"
        shards.write_table(part, storage.join(root, rel))
        rels.append(rel)
        rows += int(is_train.sum())

    failed = [{"clip_id": f.input, "source": f.input, "reason": f.reason, "message": f.message} for f in failures]
    used, unlabelled_rows, pending = [], 0, []

    def flush() -> None:
        nonlocal unlabelled_rows
        if not pending:
            return
        table = pa.concat_tables(pending)
        rel = f"{shards.SHARD_DIR}/unlabelled-{uuid.uuid4().hex[:16]}.parquet"
        shards.write_table(table, storage.join(root, rel))
        rels.append(rel)
        unlabelled_rows += table.num_rows
        pending.clear()

    for item in items:
        try:
            with fetched(item.uri) as local:
                samples = decode_audio(local, sample_rate_hz=cfg.sample_rate_hz)
                teacher_cfg = teacher.feature_config
                teacher_samples = samples if teacher_cfg.sample_rate_hz == cfg.sample_rate_hz else decode_audio(local, sample_rate_hz=teacher_cfg.sample_rate_hz)
        except (DecodeError, FetchError, storage.StorageError) as exc:
            failed.append({"clip_id": item.uri, "source": item.uri, "reason": type(exc).__name__, "message": str(exc)[:500]})
            log.warning("unlabelled %s: %s", item.uri, exc)
            continue
        feats = compute_features(samples, cfg)
        teacher_feats = feats if teacher.feature_config == cfg else compute_features(teacher_samples, teacher.feature_config)
        n = min(len(feats), len(teacher_feats))
        if n == 0:
            failed.append({"clip_id": item.uri, "source": item.uri, "reason": reasons.TOO_SHORT, "message": "shorter than half a second"})
            continue
        probs = teacher_scores(teacher, model, teacher_feats[:n])
        if teacher.gate_dbfs is not None:  # what the teacher would caption: nothing below its gate
            from sound_captions.caption.stages import window_level_dbfs

            probs[window_level_dbfs(frame_windows(teacher_samples, teacher.feature_config)[:n]) < teacher.gate_dbfs] = 0.0
        clip = "unlabelled:" + hashlib.sha256(item.uri.encode()).hexdigest()[:16]
        table = shards.shard_table(
            {
                "clip_id": [clip] * n, "source": [item.uri] * n, "second": list(range(n)), "start_s": [float(k) for k in range(n)],
                "labels": [[] for _ in range(n)], "split": ["train"] * n, "spectrogram": feats[:n], "augment": ["original"] * n,
            },
            cfg,
        )
        pending.append(_with_targets(table, labels.apply(probs), labelled=False))
        used.append(item.uri)
        if sum(t.num_rows for t in pending) >= ROWS_PER_SHARD:
            flush()
    flush()
    if failed:
        shards.write_table(shards.failures_table(failed), failures_uri)
    if rows + unlabelled_rows == 0:
        raise DistillationError(
            "nothing to train on: the dataset has no train rows and no unlabelled medium could be used"
            + (f" ({len(failed)} failed, see {failures_uri})" if failed else "")
        )
    if not rows and not labels.mask.all():
        log.warning(
            "no labelled train rows, and the teacher has no target for %s: the student learns nothing about them",
            ", ".join(m for m, on in zip(info.labels, labels.mask, strict=True) if not on),
        )
    summary = {
        "teacher": teacher_uri,
        "teacher_digest": teacher_digest,
        "teacher_architecture": teacher.architecture,
        **labels.summary(teacher.labels),
        "dataset_rows": rows,  # labelled train rows the teacher scored
        "unlabelled_media": len(used),
        "unlabelled_rows": unlabelled_rows,
        "unlabelled_failed": len(failed),
    }
    distilled = shards.DatasetInfo(
        feature_config=cfg,
        vocabulary=dict(info.vocabulary),
        shards=rels,
        counts=info.counts,
        sources=list(info.sources) + used,
        failures=len(failed),
        selection={**info.selection, "distillation": {"key": key, "summary": summary}},
        augmentation=info.augmentation,
    )
    shards.write_dataset_info(root, distilled)  # last: the completion mark
    log.info("teacher targets: %s", json.dumps({k: v for k, v in summary.items() if k != "mapped"}))
    return root, summary
