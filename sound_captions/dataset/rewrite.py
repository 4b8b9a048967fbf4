"""One dataset → another, shard by shard: rows filtered, relabelled or given another split, the
counts of ``dataset.json`` recomputed, ``dataset.json`` written last (the completion mark).

The original is only read. Used by ``dataset clean``: for its k-fold datasets (one split per
fold) and for ``--apply`` (a cleaned version: clips dropped or relabelled).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

import pyarrow as pa

from sound_captions import storage
from sound_captions.dataset import shards
from sound_captions.dataset.augmentation import TOGETHER_PREFIX
from sound_captions.dataset.build import dataset_counts
from sound_captions.dataset.sink import count_row, new_clip_entry

#: shard rows → the rows to keep (``None`` or an empty table: none), any column changed
RowTransform = Callable[[pa.Table], "pa.Table | None"]


def rewrite_dataset(
    src: str,
    dst: str,
    transform: RowTransform,
    *,
    provenance: dict | None = None,
) -> shards.DatasetInfo:
    """Write the rows ``transform`` keeps of every shard of dataset ``src`` as a new dataset at
    ``dst`` (local or ``s3://``, must not hold a dataset) and return its ``dataset.json``: one
    shard per source shard that keeps a row. Counts and each label's obtained clips
    (``coverage``) are recomputed; what the build requested is kept. ``provenance`` is
    recorded in the new ``dataset.json`` (with ``from`` and ``from_digest`` of ``src`` added);
    the build digest changes with it, so a rerun of ``dataset build`` never takes the new
    version for the old one."""
    info = shards.load_dataset_info(src)
    if storage.exists(storage.join(dst, shards.DATASET_JSON)):
        raise FileExistsError(f"{dst} already holds a dataset; choose another folder (the original is never overwritten)")
    clips: dict[str, dict] = {}
    written: list[str] = []
    for uri in shards.shard_uris(src, info):
        table = transform(shards.read_table(uri))
        if table is None or table.num_rows == 0:
            continue
        table = table.replace_schema_metadata(shards.shard_schema(info.feature_config).metadata)
        columns = {name: table.column(name).to_pylist() for name in ("clip_id", "labels", "split", "augment")}
        for clip_id, labels, split, tag in zip(*columns.values(), strict=True):
            entry = clips.setdefault(clip_id, new_clip_entry(labels, split))
            count_row(entry, labels, tag)
        target = shards.new_shard_uri(dst)
        shards.write_table(table, target)
        written.append(shards.SHARD_DIR + "/" + target.rsplit("/", 1)[-1])
    record = {"from": src, "from_digest": shards.dataset_digest(src), **(provenance or {})}
    made = replace(
        info,
        shards=written,
        counts=dataset_counts(clips, info.vocabulary),
        coverage={
            m: {**entry, "obtained": sum(1 for c, e in clips.items() if not c.startswith(TOGETHER_PREFIX) and m in e["labels"])}
            for m, entry in info.coverage.items()
        },
        obtained=sum(1 for c in clips if not c.startswith(TOGETHER_PREFIX)),
        build_digest=hashlib.sha256(json.dumps([info.build_digest, record], sort_keys=True, default=str).encode()).hexdigest(),
        provenance=record,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    failures = storage.join(src, shards.FAILURES)
    if storage.exists(failures):  # what the original could not obtain, for `dataset stats`
        storage.write_bytes(storage.join(dst, shards.FAILURES), storage.read_bytes(failures))
    shards.write_dataset_info(dst, made)
    return made
