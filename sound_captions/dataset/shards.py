"""Shard schema, shard writing, and ``dataset.json`` (the dataset's manifest and completion mark).

A dataset folder (local or ``s3://``) holds:

- ``shards/part-*.parquet`` — one row per 1-second window (schema below; beyond the columns of
  the shard contract, ``augment`` says whether a row is the clip's own audio (``original``) or
  made by the build's augmentation: ``overlap``, ``copy-N``, ``together``);
- ``failures.parquet`` — one row per requested item that could not be used, with a reason;
- ``dataset.json`` — written last: vocabulary, feature config, counts, sources, and the list of
  shard files. Readers take the shard list from it, so a shard left by a crashed run is never
  read, and a folder without ``dataset.json`` is not a dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sound_captions import __version__, storage
from sound_captions.features import FeatureConfig

DATASET_JSON = "dataset.json"
FAILURES = "failures.parquet"
SHARD_DIR = "shards"

FAILURE_SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("source", pa.string()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("labels", pa.list_(pa.string())),
        ("reason", pa.string()),
        ("message", pa.string()),
    ]
)


class NotADatasetError(FileNotFoundError):
    """The URI holds no finished dataset (no dataset.json)."""


def shard_schema(cfg: FeatureConfig) -> pa.Schema:
    """Arrow schema of a shard for feature config ``cfg`` (spectrogram: fixed-shape float16)."""
    return pa.schema(
        [
            ("clip_id", pa.string()),
            ("source", pa.string()),
            ("second", pa.int32()),
            ("start_s", pa.float64()),
            ("labels", pa.list_(pa.string())),
            ("split", pa.string()),
            ("spectrogram", pa.fixed_shape_tensor(pa.float16(), list(cfg.shape))),
            ("feature_hash", pa.string()),
            ("augment", pa.string()),
        ],
        metadata={b"feature_config": json.dumps(cfg.to_dict()).encode()},
    )


def shard_table(rows: dict[str, np.ndarray | list], cfg: FeatureConfig) -> pa.Table:
    """Columns of window rows (``spectrogram``: (n, H, W, C) array) → a shard table
    (``augment`` is optional: ``original`` for every row when absent)."""
    schema = shard_schema(cfg)
    spec = np.ascontiguousarray(np.asarray(rows["spectrogram"], dtype=np.float16))
    n = spec.shape[0]
    if spec.shape[1:] != cfg.shape:
        raise ValueError(f"spectrogram shape {spec.shape[1:]} does not match the feature config {cfg.shape}")
    tensor = pa.FixedShapeTensorArray.from_numpy_ndarray(spec) if n else pa.array([], type=schema.field("spectrogram").type.storage_type)
    if not n:
        tensor = pa.ExtensionArray.from_storage(schema.field("spectrogram").type, tensor)
    columns = {
        "clip_id": pa.array([str(x) for x in rows["clip_id"]], pa.string()),
        "source": pa.array([str(x) for x in rows["source"]], pa.string()),
        "second": pa.array(np.asarray(rows["second"], dtype=np.int32)),
        "start_s": pa.array(np.asarray(rows["start_s"], dtype=np.float64)),
        "labels": pa.array([list(x) for x in rows["labels"]], pa.list_(pa.string())),
        "split": pa.array([str(x) for x in rows["split"]], pa.string()),
        "spectrogram": tensor,
        "feature_hash": pa.array([cfg.hash] * n, pa.string()),
        "augment": pa.array([str(x) for x in rows["augment"]] if "augment" in rows else ["original"] * n, pa.string()),
    }
    return pa.Table.from_pydict(columns, schema=schema)


def write_table(table: pa.Table, uri: str) -> None:
    """Write a Parquet table to ``uri`` atomically (local temp + rename, or one upload)."""
    with tempfile.TemporaryDirectory(prefix="sc-shard-") as tmp:
        local = os.path.join(tmp, "part.parquet")
        pq.write_table(table, local, compression="zstd")
        storage.upload_file(local, uri)


def new_shard_uri(root: str) -> str:
    return storage.join(root, SHARD_DIR, f"part-{uuid.uuid4().hex[:16]}.parquet")


def read_table(uri: str) -> pa.Table:
    """Read one Parquet file from a URI."""
    import io

    # one thread: with torch loaded, Arrow's pool can abort the process at exit
    # ("terminate called without an active exception", 1 run in 4 of `dataset stats`)
    return pq.read_table(io.BytesIO(storage.read_bytes(uri)), use_threads=False)


def spectrograms(table: pa.Table) -> np.ndarray:
    """The ``spectrogram`` column as an (n, H, W, C) float16 array."""
    column = table.column("spectrogram").combine_chunks()
    if len(column) == 0:
        shape = column.type.shape
        return np.zeros((0, *shape), dtype=np.float16)
    return column.to_numpy_ndarray()


@dataclass
class DatasetInfo:
    """The content of ``dataset.json``."""

    feature_config: FeatureConfig
    vocabulary: dict[str, str]  # mid → display name, in model output order
    shards: list[str]  # paths relative to the dataset root
    counts: dict = field(default_factory=dict)
    coverage: dict = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    failures: int = 0
    requested: int = 0  # items asked for (source rows that did not parse included)
    obtained: int = 0  # clips with at least one window in the shards
    failure_reasons: dict[str, int] = field(default_factory=dict)
    selection: dict = field(default_factory=dict)  # how the clips were chosen, and the label policy
    build_digest: str = ""  # what the content was built from (a rerun with the same digest is a no-op)
    augmentation: dict = field(default_factory=dict)  # BuildAugmentConfig.to_dict() of the train split; {}: none
    # per-second labels from events: {"min_overlap_s", "clips"}; {}: every window has its clip's labels
    labels_per_second: dict = field(default_factory=dict)
    # a version made from another dataset (``dataset clean --apply``): {"from", "from_digest",
    # "decisions", "dropped": [...], "relabelled": [...]}; {}: built from sources
    provenance: dict = field(default_factory=dict)
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    tool_version: str = __version__

    @property
    def labels(self) -> list[str]:
        return list(self.vocabulary)

    def to_dict(self) -> dict:
        return {
            "format": "sound-captions/dataset/1",
            "tool_version": self.tool_version,
            "created": self.created,
            "feature_config": self.feature_config.to_dict(),
            "feature_hash": self.feature_config.hash,
            "vocabulary": self.vocabulary,
            "counts": self.counts,
            "coverage": self.coverage,
            "sources": self.sources,
            "failures": self.failures,
            "requested": self.requested,
            "obtained": self.obtained,
            "failure_reasons": self.failure_reasons,
            "selection": self.selection,
            "build_digest": self.build_digest,
            "augmentation": self.augmentation,
            "labels_per_second": self.labels_per_second,
            **({"provenance": self.provenance} if self.provenance else {}),
            "shards": self.shards,
        }

    @classmethod
    def from_dict(cls, data: dict) -> DatasetInfo:
        cfg = FeatureConfig.from_dict(data["feature_config"])
        if data.get("feature_hash") and data["feature_hash"] != cfg.hash:
            raise ValueError("dataset.json: feature_hash does not match its feature_config")
        return cls(
            feature_config=cfg,
            vocabulary=dict(data["vocabulary"]),
            shards=list(data["shards"]),
            counts=data.get("counts", {}),
            coverage=data.get("coverage", {}),
            sources=list(data.get("sources", [])),
            failures=int(data.get("failures", 0)),
            requested=int(data.get("requested", 0)),
            obtained=int(data.get("obtained", 0)),
            failure_reasons=dict(data.get("failure_reasons", {})),
            selection=dict(data.get("selection", {})),
            build_digest=str(data.get("build_digest", "")),
            augmentation=dict(data.get("augmentation") or {}),
            labels_per_second=dict(data.get("labels_per_second") or {}),
            provenance=dict(data.get("provenance") or {}),
            created=data.get("created", ""),
            tool_version=data.get("tool_version", ""),
        )


def dataset_json_bytes(info: DatasetInfo) -> bytes:
    return json.dumps(info.to_dict(), indent=2, sort_keys=False).encode()


def write_dataset_info(root: str, info: DatasetInfo) -> None:
    storage.write_bytes(storage.join(root, DATASET_JSON), dataset_json_bytes(info))


def load_dataset_info(root: str) -> DatasetInfo:
    uri = storage.join(root, DATASET_JSON)
    if not storage.exists(uri):
        raise NotADatasetError(f"{root}: no {DATASET_JSON} (not a dataset, or its build did not finish)")
    return DatasetInfo.from_dict(json.loads(storage.read_text(uri)))


def dataset_digest(root: str) -> str:
    """sha256 of the dataset's ``dataset.json`` (what a model bundle records of its data)."""
    return hashlib.sha256(storage.read_bytes(storage.join(root, DATASET_JSON))).hexdigest()


def shard_uris(root: str, info: DatasetInfo) -> list[str]:
    return [storage.join(root, rel) for rel in info.shards]


def read_failures(root: str) -> pa.Table:
    uri = storage.join(root, FAILURES)
    if not storage.exists(uri):
        return FAILURE_SCHEMA.empty_table()
    return read_table(uri)


def failures_table(rows: Iterable[dict]) -> pa.Table:
    rows = list(rows)
    return pa.Table.from_pylist(
        [{name: row.get(name) for name in FAILURE_SCHEMA.names} for row in rows], schema=FAILURE_SCHEMA
    )
