"""Clip requests → Parquet shards + ``failures.parquet`` + ``dataset.json``, as a Ray Data pipeline.

    requests ─► fetch (network) ─► decode + 1-s windows (CPU) ─► log-mel (CPU, batched) ─► ShardSink
                                      (+ train augmentation: copies, overlap, "together"; see
                                       ``augmentation.py``)

The stages are separate Ray Data operators so that downloads, decoding and features scale
independently; Ray's streaming executor bounds the memory between them. ``ShardSink`` writes
each shard atomically and, once every write task has finished, ``failures.parquet`` and then
``dataset.json`` (the completion mark that lists the shards readers may use).

Resume: downloads are cached in a scratch folder with an archive (see ``download.py``), so a
rerun after a killed build fetches nothing it already has; decoding and features run again, new
shards are written under new names, ``dataset.json`` lists only those, and shards no
``dataset.json`` lists (a killed run's) are deleted. A finished dataset is left alone when it was
built from the same requests and options (its ``build_digest`` matches), and refused otherwise
unless ``overwrite`` is given.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from sound_captions import storage
from sound_captions.dataset import shards
from sound_captions.dataset.augmentation import TOGETHER_PREFIX
from sound_captions.dataset.options import BuildOptions
from sound_captions.dataset.sink import ShardSink
from sound_captions.dataset.stages import (
    decode_stage,
    feature_stage,
    join_events,
    join_labels,
    together_stage,
)
from sound_captions.download import DownloadOptions, needs_download
from sound_captions.features import FeatureConfig
from sound_captions.ontology import Ontology
from sound_captions.sources.requests import ClipRequest, SourceFailure

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")


class DatasetExistsError(FileExistsError):
    """The output already holds a finished dataset of other requests or options, and
    ``overwrite`` was not given."""

SCRATCH_DIR = ".scratch"


def training_labels(request: ClipRequest) -> tuple[str, ...]:
    """The labels a clip carries in the shards: the chosen labels present after selection
    (``selected_labels``, rolled up to the chosen classes), none for an explicit negative, and
    the source's own labels when no selection was made (a manifest build)."""
    if request.negative:
        return ()
    return request.selected_labels or request.labels


def training_events(request: ClipRequest, ontology: Ontology) -> list[tuple[str, int, int]]:
    """A clip's event times in terms of its training labels: an event of class e labels each
    training label that is e or an ontology ancestor of e (a chosen class with
    ``include_descendants``); events of classes the clip is not trained on are dropped."""
    targets = [(t, ontology.descendants(t) if t in ontology.classes else {t}) for t in training_labels(request)]
    return [(t, e.onset_ms, e.offset_ms) for e in request.events for t, below in targets if e.label == t or e.label in below]


def default_scratch_dir(root: str) -> str:
    """Where downloads go by default: ``<out>/.scratch`` for a local output; for ``s3://`` a
    local folder named after the output URI (so that a rerun finds its downloads again)."""
    if not storage.is_s3(root):
        return str(storage.local_path(storage.join(root, SCRATCH_DIR)))
    import os
    import tempfile

    digest = hashlib.sha1(root.encode()).hexdigest()[:12]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    if not os.access(os.path.dirname(base) or "/", os.W_OK) and not os.path.isdir(base):
        base = tempfile.gettempdir()
    return os.path.join(base, "sound-captions", "scratch", digest)


def rows_per_shard(cfg: FeatureConfig, target_shard_mb: float) -> int:
    """Rows per shard for a target size: one row is dominated by its float16 spectrogram."""
    row_bytes = int(np.prod(cfg.shape)) * 2 + 256
    return max(1, int(target_shard_mb * (1 << 20)) // row_bytes)


def build_digest(requests: list[ClipRequest], splits: dict[str, str], vocabulary: dict[str, str], options: BuildOptions) -> str:
    """sha256 over what decides a dataset's content (requests, labels, splits, features, and the
    augmentation when there is any: a build without it keeps the digest it always had)."""
    h = hashlib.sha256()
    head = {"features": options.feature_config.hash, "vocabulary": sorted(vocabulary)}
    if options.augment.enabled:
        head["augment"] = options.augment.to_dict()
    if any(r.events for r in requests):  # per-second labels (a build without events keeps its digest)
        head["events"] = {
            "min_overlap_s": options.event_min_overlap_s,
            "clips": sorted([r.clip_id, sorted([e.label, e.onset_ms, e.offset_ms] for e in r.events)] for r in requests if r.events),
        }
    h.update(json.dumps(head, sort_keys=True).encode())
    for r in sorted(requests, key=lambda r: r.clip_id):
        h.update(json.dumps([r.clip_id, r.source, r.start_s, r.end_s, list(training_labels(r)), splits[r.clip_id]]).encode())
    return h.hexdigest()


def assign_splits(requests: list[ClipRequest], fractions: tuple[float, float, float], seed: int) -> dict[str, str]:
    """Split by clip (never by window), stratified by each clip's first label, deterministic."""
    if abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"split fractions must be non-negative and sum to 1, got {fractions}")
    groups: dict[str, list[str]] = defaultdict(list)
    for r in requests:
        labels = training_labels(r)
        groups[labels[0] if labels else ""].append(r.clip_id)
    rng = random.Random(seed)
    out: dict[str, str] = {}
    for key in sorted(groups):
        ids = sorted(groups[key])
        rng.shuffle(ids)
        n = len(ids)
        n_valid = int(round(n * fractions[1]))
        n_test = int(round(n * fractions[2]))
        if n >= 3:  # every split gets something when a label has a few clips
            n_valid = max(n_valid, 1 if fractions[1] > 0 else 0)
            n_test = max(n_test, 1 if fractions[2] > 0 else 0)
        for i, clip_id in enumerate(ids):
            out[clip_id] = "valid" if i < n_valid else "test" if i < n_valid + n_test else "train"
    return out


def dataset_vocabulary(requests: list[ClipRequest], ontology: Ontology, labels: list[str] | None = None) -> dict[str, str]:
    """mid → display name for the labels the dataset will carry (ontology order)."""
    mids = {ontology.resolve(x) for x in labels} if labels else {m for r in requests for m in training_labels(r)}
    order = {m: i for i, m in enumerate(ontology.labelled_mids)}
    return {m: ontology.name(m) for m in sorted(mids, key=lambda m: (order.get(m, 10**6), m))}


@dataclass
class BuildReport:
    """What a build did. ``skipped``: the output already held this dataset, nothing was run."""

    root: str
    info: shards.DatasetInfo
    n_requested: int
    n_clips: int
    n_windows: int
    n_failed: int
    failure_reasons: dict[str, int]
    skipped: bool = False


def build_dataset(
    requests: list[ClipRequest],
    out_uri: str,
    options: BuildOptions = BuildOptions(),  # noqa: B008 - frozen, never changed
    *,
    source_failures: list[SourceFailure] = (),
    vocabulary: dict[str, str] | None = None,
    sources: list[str] = (),
    download: DownloadOptions | None = None,
    selection: dict | None = None,
    label_sources: dict | None = None,
    progress=None,
) -> BuildReport:
    """Run the build pipeline on the current Ray cluster and write the dataset to ``out_uri``.

    Args:
        requests: the clips to use (unique ``clip_id``); shard labels are
            :func:`training_labels` of each.
        out_uri: dataset folder, local or ``s3://``.
        options: resources, features, splits, shard size, overwrite.
        source_failures: source rows that could not be parsed (recorded in ``failures.parquet``).
        vocabulary: mid → display name of the dataset's labels (default: every training label).
        sources: the source files used (recorded in ``dataset.json``).
        download: settings of the fetch stage for ``yt:`` and http(s) sources (default: scratch
            at :func:`default_scratch_dir`); sources in storage are decoded where they are.
        selection: how the requests were chosen (recorded in ``dataset.json``).
        label_sources: how per-second labels were read, e.g. the subtitle mapping report
            (recorded in ``dataset.json``'s ``labels_per_second``).
        progress: optional ``BuildProgress`` (see ``progress.py``) told about finished items.
    """
    root = storage.check_uri(out_uri)
    ontology = Ontology.load()
    vocabulary = vocabulary or dataset_vocabulary(requests, ontology)
    splits = assign_splits(requests, options.split_fractions, options.seed)
    digest = build_digest(requests, splits, vocabulary, options)
    info_uri = storage.join(root, shards.DATASET_JSON)
    if storage.exists(info_uri) and not options.overwrite:
        existing = shards.load_dataset_info(root)
        if existing.build_digest != digest:
            raise DatasetExistsError(
                f"{root} already holds a dataset built from other requests or options; pass overwrite to replace it"
            )
        log.info("%s already holds this dataset (build digest %s); nothing to do", root, digest[:12])
        return _report_of_existing(root, existing)
    items = [
        {
            "clip_id": r.clip_id, "source": r.source,
            "start_s": np.nan if r.start_s is None else r.start_s, "end_s": np.nan if r.end_s is None else r.end_s,
            "labels": join_labels(training_labels(r)), "split": splits[r.clip_id],
            "events": join_events(training_events(r, ontology)),
        }
        for r in requests
    ]  # fmt: skip
    augment = options.augment
    if augment.together > 0:
        # "together" partners come from the clips of one decode task (one block of items):
        # a seeded shuffle mixes the classes inside blocks, whatever order the sources listed
        random.Random(augment.seed).shuffle(items)
    result = _run_stages(items, requests, root, options, download, progress) if items else _nothing_written()
    return _write_metadata(root, requests, result, options, vocabulary, digest, source_failures, sources, selection, label_sources)


def _nothing_written() -> dict:
    return {"shards": [], "clips": {}, "failures": []}


def _run_stages(items: list[dict], requests: list[ClipRequest], root: str, options: BuildOptions, download, progress) -> dict:
    """The Ray Data pipeline: items → (fetch) → decode (+ "together") → features → shards; what
    the sink wrote (shard names, per-clip counts, failure rows)."""
    import ray

    from sound_captions.dataset.fetch import FetchSegments

    cfg, augment = options.feature_config, options.augment
    sink = ShardSink(root, cfg, rows_per_shard(cfg, options.target_shard_mb))
    n_blocks = max(1, min(len(items), math.ceil(len(items) / options.items_per_block), 10_000))
    ds = ray.data.from_items(items, override_num_blocks=n_blocks)
    if any(needs_download(r) for r in requests):
        download = download or DownloadOptions(scratch_dir=default_scratch_dir(root))
        # network-bound: a few actors (one per node on a cluster), each running
        # ``fetch_concurrency`` downloads at once on threads that share one host pacer
        ds = ds.map_batches(
            FetchSegments,
            fn_constructor_kwargs={"options": download.to_dict()},
            batch_size=1,
            num_cpus=options.fetch_cpus,
            compute=ray.data.ActorPoolStrategy(
                size=options.fetch_actors,
                max_concurrent_calls_per_actor=options.fetch_concurrency,
                max_tasks_in_flight_per_actor=options.fetch_concurrency,
                enable_true_multi_threading=True,
            ),
        )
    ds = ds.map_batches(
        decode_stage,
        fn_kwargs={
            "feature_config": cfg.to_dict(), "ffmpeg": options.ffmpeg, "augment": augment.to_dict() if augment.enabled else None,
            "min_overlap_s": options.event_min_overlap_s,
        },
        batch_size=1,
        num_cpus=options.decode_cpus,
        compute=ray.data.TaskPoolStrategy(),
    )
    if augment.together > 0:
        # same resources as decode, so Ray fuses the two: the batch (whole block) is the
        # windows of the clips one decode task produced, a deterministic pool of partners
        ds = ds.map_batches(
            together_stage,
            fn_kwargs={"feature_config": cfg.to_dict(), "augment": augment.to_dict()},
            batch_size=None,
            num_cpus=options.decode_cpus,
            compute=ray.data.TaskPoolStrategy(),
        )
    ds = ds.map_batches(
        feature_stage,
        fn_kwargs={"feature_config": cfg.to_dict(), "threads": max(1, int(options.feature_cpus))},
        batch_size=options.feature_batch_size,
        num_cpus=options.feature_cpus,
        compute=ray.data.TaskPoolStrategy(),
    )
    if progress is not None:
        ds = progress.attach(ds)
    # the writer gathers ``rows_per_shard`` rows per task: it must not fuse with the CPU
    # stages (Ray fuses map stages with equal resources), or one task would decode everything
    write_cpus = options.write_cpus if options.write_cpus != options.feature_cpus else options.write_cpus * 0.99
    ds.write_datasink(sink, ray_remote_args={"num_cpus": write_cpus})
    return sink.result or _nothing_written()


def _write_metadata(root, requests, result, options, vocabulary, digest, source_failures, sources, selection, label_sources=None) -> BuildReport:
    """``failures.parquet``, then ``dataset.json`` (the completion mark), then the removal of
    shards it does not list (a killed run's) → the build's report."""
    cfg, augment = options.feature_config, options.augment
    failures = list(result["failures"])
    by_id = {r.clip_id: r for r in requests}
    for row in failures:
        request = by_id.get(row["clip_id"])
        if request is not None:
            row["end_s"] = request.end_s
            row["start_s"] = request.start_s
    failures += [
        {"clip_id": "", "source": f.item, "start_s": None, "end_s": None, "labels": [], "reason": f.reason, "message": f.message}
        for f in source_failures
    ]
    shards.write_table(shards.failures_table(failures), storage.join(root, shards.FAILURES))
    real_clips = {k: v for k, v in result["clips"].items() if not k.startswith(TOGETHER_PREFIX)}
    info = shards.DatasetInfo(
        feature_config=cfg,
        vocabulary=vocabulary,
        shards=sorted(rel for rel, _ in result["shards"]),
        counts=dataset_counts(result["clips"], vocabulary),
        coverage=_coverage(requests, result["clips"], vocabulary),
        sources=sorted(set(sources)),
        failures=len(failures),
        requested=len(requests) + len(source_failures),
        obtained=len(real_clips),
        failure_reasons=_reasons(failures),
        selection=dict(selection or {}),
        build_digest=digest,
        augmentation=augment.to_dict() if augment.enabled else {},
        labels_per_second=(
            {"min_overlap_s": options.event_min_overlap_s, "clips": sum(1 for r in requests if r.events), **(label_sources or {})}
            if any(r.events for r in requests) else {}
        ),
    )
    shards.write_dataset_info(root, info)
    _remove_unlisted_shards(root, set(info.shards))
    return BuildReport(
        root=root,
        info=info,
        n_requested=len(requests) + len(source_failures),
        n_clips=len(real_clips),
        n_windows=sum(c["windows"] for c in result["clips"].values()),
        n_failed=len(failures),
        failure_reasons=_reasons(failures),
    )


def _reasons(failures: list[dict]) -> dict[str, int]:
    reasons: dict[str, int] = defaultdict(int)
    for row in failures:
        reasons[row["reason"]] += 1
    return dict(sorted(reasons.items()))


def _report_of_existing(root: str, info: shards.DatasetInfo) -> BuildReport:
    windows = sum(info.counts.get(s, {}).get("windows", 0) for s in SPLITS)
    return BuildReport(
        root=root, info=info, n_requested=info.requested, n_clips=info.obtained, n_windows=windows,
        n_failed=info.failures, failure_reasons=dict(info.failure_reasons), skipped=True,
    )  # fmt: skip


def dataset_counts(clips: dict[str, dict], vocabulary: dict[str, str]) -> dict:
    """Per split: clips (requested clips only), windows (every row, augmented ones included:
    what training sees), per label, and windows per augment tag (``augment``); "together"
    sequences are counted under ``together`` (sequences, windows), not as clips."""

    def new_split() -> dict:
        return {
            "clips": 0, "windows": 0, "labels": {m: {"clips": 0, "windows": 0} for m in vocabulary},
            "augment": {}, "together": {"sequences": 0, "windows": 0},
        }  # fmt: skip

    counts = {split: new_split() for split in SPLITS}
    counts["negatives"] = {"clips": 0, "windows": 0}
    for clip_id, entry in clips.items():
        split = counts.setdefault(entry["split"], new_split())
        split["windows"] += entry["windows"]
        for tag, n in entry.get("augment", {}).items():
            split["augment"][tag] = split["augment"].get(tag, 0) + n
        label_windows = entry.get("label_windows") or {m: entry["windows"] for m in entry["labels"]}
        if clip_id.startswith(TOGETHER_PREFIX):
            split["together"]["sequences"] += 1
            split["together"]["windows"] += entry["windows"]
            for m, n in label_windows.items():
                if m in vocabulary:
                    split["labels"][m]["windows"] += n
            continue
        split["clips"] += 1
        known = [m for m in entry["labels"] if m in vocabulary]
        if not known:
            counts["negatives"]["clips"] += 1
            counts["negatives"]["windows"] += entry["windows"]
        for m in known:
            split["labels"][m]["clips"] += 1
            split["labels"][m]["windows"] += label_windows.get(m, 0)
    return counts


def _coverage(requests: list[ClipRequest], clips: dict[str, dict], vocabulary: dict[str, str]) -> dict:
    coverage = {m: {"requested": 0, "obtained": 0} for m in vocabulary}
    for r in requests:
        for m in training_labels(r):
            if m in coverage:
                coverage[m]["requested"] += 1
                if r.clip_id in clips:
                    coverage[m]["obtained"] += 1
    return coverage


def _remove_unlisted_shards(root: str, listed: set[str]) -> None:
    """Delete shards that no dataset.json lists (left by a crashed or replaced run)."""
    try:
        present = list(storage.list_files(storage.join(root, shards.SHARD_DIR), suffixes=(".parquet",)))
    except storage.StorageError:
        return
    for obj in present:
        rel = shards.SHARD_DIR + "/" + obj.uri.rsplit("/", 1)[-1]
        if rel not in listed:
            storage.delete(obj.uri)
