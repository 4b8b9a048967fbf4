"""Dataset → review folder: out-of-fold scores (``folds``), verdicts (``suspicion``), and

- ``suspicions.csv``: one row per examined clip, most suspicious first (rank, clip, labels,
  suspicion, cleanlab's issue flag, labels probably wrong / missing, the suggested change, the
  seconds a label seems absent from);
- ``seconds.csv``: per second of every clip, the out-of-fold score of each label it has or
  probably misses (clip_id, second, start_s, label, given, score);
- with a CLAP model, its zero-shot scores beside those: ``clap_*`` columns in
  ``suspicions.csv``, ``clap`` in ``seconds.csv`` (``clap``);
- ``review.html``: the page (``page``), for the ``page_clips`` most suspicious clips;
- ``clean.json``: the settings, the dataset's digest and the counts.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sound_captions import storage
from sound_captions.clean.clap import CLIP_COLUMNS, ClapClip, ClapModel, clip_columns, score_clips
from sound_captions.clean.folds import out_of_fold_scores, own_seconds
from sound_captions.clean.options import SPLITS, CleanConfig
from sound_captions.clean.page import write_review_page
from sound_captions.clean.suspicion import DROP, KEEP, RELABEL, ClipSuspicion, rank_clips
from sound_captions.dataset import shards

SUSPICIONS = "suspicions.csv"
SECONDS = "seconds.csv"
PAGE = "review.html"
SUMMARY = "clean.json"
WORK = ".work"


@dataclass
class CleanReport:
    review: str
    clips: list[ClipSuspicion]
    flagged: int  # cleanlab issues
    suggested: int  # clips with a suggested change


def _csv_text(header: list[str], rows) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def suspicions_csv(clips: list[ClipSuspicion], labels: list[str], names: dict[str, str], clap: dict[str, ClapClip] | None = None) -> str:
    def names_of(mids) -> str:
        return ";".join(names.get(m, m) for m in mids)

    def clap_cells(c: ClipSuspicion) -> list[str]:
        return list(clip_columns(clap.get(c.clip_id) if clap is not None else None, c.labels, labels, names).values())

    return _csv_text(
        ["rank", "clip_id", "source", "start_s", "seconds", "labels", "suspicion", "wrong_score", "missing_score", "label_quality", "issue",
         "probably_wrong", "probably_missing", "suggestion", "suggested_labels", "absent_seconds", *CLIP_COLUMNS],
        (
            [rank, c.clip_id, c.source, f"{c.start_s:.3f}", c.n_seconds, names_of(c.labels), f"{c.suspicion:.6f}",
             f"{c.wrong_score:.6f}", f"{c.missing_score:.6f}", f"{c.label_quality:.6f}", int(c.issue), names_of(c.wrong), names_of(c.missing), c.suggestion,
             names_of(c.suggested_labels),
             " ".join(f"{names.get(m, m)}:{','.join(map(str, s))}" for m, s in c.partial.items()), *clap_cells(c)]
            for rank, c in enumerate(clips, start=1)
        ),
    )  # fmt: skip


def seconds_csv(clips: list[ClipSuspicion], labels: list[str], clap: dict[str, ClapClip] | None = None) -> str:
    """``clap``: the CLAP probability of the label in that second (blank without CLAP, or for a
    clip it could not score)."""
    index = {m: j for j, m in enumerate(labels)}

    def zero_shot(c: ClipSuspicion, k: int, m: str) -> str:
        scored = clap.get(c.clip_id) if clap is not None else None
        return f"{scored.per_second[k, index[m]]:.4f}" if scored is not None and scored.per_second is not None else ""

    rows = (
        [c.clip_id, k, f"{c.start_s + k:.3f}", m, int(m in c.labels), f"{c.per_second[k, index[m]]:.4f}", zero_shot(c, k, m)]
        for c in sorted(clips, key=lambda c: c.clip_id)
        for m in (*c.labels, *c.missing)
        for k in range(c.n_seconds)
    )
    return _csv_text(["clip_id", "second", "start_s", "label", "given", "score", "clap"], rows)


def clip_spectrograms(data_uri: str, clip_ids: set[str]) -> dict[str, np.ndarray]:
    """clip id → (n_seconds, H, W, C) its own windows in time order, for ``clip_ids``."""
    info = shards.load_dataset_info(data_uri)
    parts: dict[str, list[tuple[float, np.ndarray]]] = {}
    for uri in shards.shard_uris(data_uri, info):
        table = shards.read_table(uri)
        table = own_seconds(table, SPLITS)
        table = table.filter(pc.is_in(table.column("clip_id"), value_set=pa.array(sorted(clip_ids), pa.string())))
        if not table.num_rows:
            continue
        spec = shards.spectrograms(table)
        for i, (clip_id, start) in enumerate(zip(table.column("clip_id").to_pylist(), table.column("start_s").to_pylist(), strict=True)):
            parts.setdefault(clip_id, []).append((start, spec[i]))
    return {c: np.stack([s for _, s in sorted(v, key=lambda t: t[0])]) for c, v in parts.items()}


def clean_dataset(
    data_uri: str,
    review: str,
    cfg: CleanConfig = CleanConfig(),  # noqa: B008 - frozen
    *,
    page_clips: int = 200,
    audio: bool = True,
    clap: ClapModel | None = None,
    progress: Callable[[str], None] = print,
) -> CleanReport:
    """Examine dataset ``data_uri`` and write the review folder ``review`` (Ray cluster: current);
    with ``clap``, every examined clip also gets that model's zero-shot scores, beside the
    out-of-fold ones."""
    info = shards.load_dataset_info(data_uri)
    names = dict(info.vocabulary)
    oof = out_of_fold_scores(data_uri, storage.join(review, WORK), cfg, progress=progress)
    clips = rank_clips(oof)
    zero_shot = None
    if clap is not None:
        progress(f"CLAP: scoring {len(clips)} clips and their seconds")
        zero_shot = score_clips(clap, clips, oof.labels, names, progress=progress)
    storage.write_text(storage.join(review, SUSPICIONS), suspicions_csv(clips, oof.labels, names, zero_shot))
    storage.write_text(storage.join(review, SECONDS), seconds_csv(clips, oof.labels, zero_shot))
    shown = clips[:page_clips]
    flagged = sum(c.issue for c in clips)
    suggested = sum(c.suggestion != KEEP for c in clips)
    summary = (
        f"{len(clips)} clips of {data_uri} examined with {cfg.folds}-fold out-of-fold predictions ({cfg.model}); "
        f"cleanlab flags {flagged}, {suggested} have a suggested change; the {len(shown)} most suspicious are shown."
        + (f" Zero-shot scores: CLAP {clap.version} ({os.path.basename(clap.path)})." if clap is not None else "")
    )
    write_review_page(
        storage.join(review, PAGE), shown, oof.labels, names, clip_spectrograms(data_uri, {c.clip_id for c in shown}),
        title=f"Label review: {data_uri}", summary=summary, audio=audio, clap=zero_shot,
    )
    storage.write_text(
        storage.join(review, SUMMARY),
        json.dumps({
            "format": "sound-captions/clean/1", "dataset": data_uri, "dataset_digest": shards.dataset_digest(data_uri),
            "config": cfg.to_dict(), "clips": len(clips), "flagged": flagged, "suggested": suggested,
            "suggestions": {k: sum(c.suggestion == k for c in clips) for k in (KEEP, DROP, RELABEL)},
            "page_clips": len(shown),
            "clap": None if clap is None else {
                **clap.describe(), "scored": sum(z.probability is not None for z in zero_shot.values()),
                "unscored": {c: z.problem for c, z in zero_shot.items() if z.probability is None},
            },
        }, indent=2),
    )  # fmt: skip
    return CleanReport(review=review, clips=clips, flagged=flagged, suggested=suggested)
