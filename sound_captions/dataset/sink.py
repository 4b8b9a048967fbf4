"""The dataset build's sink: window rows → Parquet shards (each written atomically) and
failure rows aside; once every write task is done, the shard list, per-clip counts and failures
that ``build.py`` turns into ``failures.parquet`` and ``dataset.json``."""

from __future__ import annotations

import logging
import math

import numpy as np
from ray.data import Datasink

from sound_captions.dataset import shards
from sound_captions.dataset.stages import split_labels
from sound_captions.features import FeatureConfig

log = logging.getLogger(__name__)


class ShardSink(Datasink):
    """A Ray Data ``Datasink`` writing window rows as shards and failure rows aside."""

    def __init__(self, root: str, cfg: FeatureConfig, rows_per_shard: int):
        self.root = root
        self.cfg = cfg
        self.rows_per_shard = rows_per_shard
        self.result: dict | None = None

    @property
    def min_rows_per_write(self) -> int:
        return self.rows_per_shard

    def get_name(self) -> str:
        return "ShardSink"

    def write(self, blocks, ctx) -> dict:
        """Write this task's window rows as shards of about ``rows_per_shard`` rows (each
        written atomically) and return the shard names, per-clip counts and failure rows."""
        import pyarrow as pa

        tables = [pa.Table.from_pandas(b) if not isinstance(b, pa.Table) else b for b in blocks]
        written: list[tuple[str, int]] = []
        clips: dict[str, dict] = {}
        failures: list[dict] = []
        parts: list[pa.Table] = []
        for table in tables:
            if table.num_rows == 0:
                continue
            batch = {name: table.column(name).to_pylist() for name in ("clip_id", "source", "second", "start_s", "labels", "split", "reason", "message")}
            n_rows = len(batch["clip_id"])
            batch["augment"] = table.column("augment").to_pylist() if "augment" in table.column_names else ["original"] * n_rows
            ok = np.asarray([r == "" for r in batch["reason"]], dtype=bool)
            for i in np.flatnonzero(~ok):
                failures.append(
                    {
                        "clip_id": batch["clip_id"][i], "source": batch["source"][i],
                        "start_s": batch["start_s"][i], "end_s": None, "labels": split_labels(batch["labels"][i]),
                        "reason": batch["reason"][i], "message": batch["message"][i],
                    }
                )  # fmt: skip
            if not ok.any():
                continue
            spec = _column_ndarray(table.column("spectrogram"))[ok]
            rows = {k: [v for v, keep in zip(batch[k], ok, strict=True) if keep] for k in ("clip_id", "source", "second", "start_s", "labels", "split", "augment")}
            rows["labels"] = [split_labels(x) for x in rows["labels"]]
            rows["spectrogram"] = spec
            for clip_id, labels, split, tag in zip(rows["clip_id"], rows["labels"], rows["split"], rows["augment"], strict=True):
                entry = clips.setdefault(clip_id, new_clip_entry(labels, split))
                count_row(entry, labels, tag)
            parts.append(shards.shard_table(rows, self.cfg))
        if parts:
            table_out = pa.concat_tables(parts)
            n_parts = max(1, round(table_out.num_rows / self.rows_per_shard))
            step = math.ceil(table_out.num_rows / n_parts)
            for start in range(0, table_out.num_rows, step):
                part = table_out.slice(start, step)
                uri = shards.new_shard_uri(self.root)
                shards.write_table(part, uri)
                written.append((shards.SHARD_DIR + "/" + uri.rsplit("/", 1)[-1], part.num_rows))
        return {"shards": written, "clips": clips, "failures": failures}

    def on_write_complete(self, write_result) -> None:
        shard_list: list[tuple[str, int]] = []
        clips: dict[str, dict] = {}
        failures: list[dict] = []
        for ret in write_result.write_returns:
            shard_list.extend(ret["shards"])
            failures.extend(ret["failures"])
            for clip_id, entry in ret["clips"].items():
                merged = clips.setdefault(clip_id, new_clip_entry(entry["labels"], entry["split"]))
                merged["windows"] += entry["windows"]
                merged["labels"] += [m for m in entry["labels"] if m not in merged["labels"]]
                for key in ("label_windows", "augment"):
                    for name, n in entry[key].items():
                        merged[key][name] = merged[key].get(name, 0) + n
        self.result = {"shards": shard_list, "clips": clips, "failures": failures}

    def on_write_failed(self, error: Exception) -> None:
        log.error("dataset write failed: %s", error)


def new_clip_entry(labels, split: str) -> dict:
    """What the sink keeps per clip id: first row's labels, split, windows, windows per label
    (a "together" sequence's labels change per second) and per augment tag."""
    return {"labels": list(labels or []), "split": split, "windows": 0, "label_windows": {}, "augment": {}}


def count_row(entry: dict, labels, tag: str) -> None:
    entry["windows"] += 1
    entry["labels"] += [m for m in labels or [] if m not in entry["labels"]]  # per-second labels: the union
    for mid in labels or []:
        entry["label_windows"][mid] = entry["label_windows"].get(mid, 0) + 1
    entry["augment"][tag] = entry["augment"].get(tag, 0) + 1


def _column_ndarray(column) -> np.ndarray:
    column = column.combine_chunks()
    if hasattr(column, "to_numpy_ndarray"):
        return column.to_numpy_ndarray()
    return np.stack(column.to_numpy(zero_copy_only=False))
