"""Looking at a built dataset: ``dataset.json`` + ``failures.parquet`` → stats (dict or text), and
shards → a PNG grid of example spectrograms per label (rows = labels, columns = examples).

The stats come from the metadata alone (no shard is read); the preview reads shards one at a
time and stops as soon as every label has enough candidates.
"""

from __future__ import annotations

import random
from collections import Counter

import numpy as np

from sound_captions.dataset import shards
from sound_captions.plots import new_figure, save_png

SPLITS = ("train", "valid", "test")
NEGATIVE = "(negative)"


def stats_dict(uri: str) -> dict:
    """Counts per label and split (clips and windows), coverage, failure reasons of a dataset."""
    info = shards.load_dataset_info(uri)
    failures = shards.read_failures(uri)
    reasons = Counter(failures.column("reason").to_pylist()) if failures.num_rows else Counter()
    labels = []
    for mid, name in info.vocabulary.items():
        row = {"mid": mid, "name": name}
        for split in SPLITS:
            cell = info.counts.get(split, {}).get("labels", {}).get(mid, {})
            row[split] = {"clips": cell.get("clips", 0), "windows": cell.get("windows", 0)}
        cov = info.coverage.get(mid, {})
        row["requested"] = cov.get("requested", 0)
        row["obtained"] = cov.get("obtained", 0)
        labels.append(row)
    return {
        "uri": uri,
        "feature_config": info.feature_config.to_dict(),
        "feature_hash": info.feature_config.hash,
        "shards": len(info.shards),
        "requested": info.requested,
        "obtained": info.obtained,
        "splits": {s: {k: info.counts.get(s, {}).get(k, 0) for k in ("clips", "windows")} for s in SPLITS},
        "negatives": info.counts.get("negatives", {"clips": 0, "windows": 0}),
        "labels": labels,
        "failures": failures.num_rows,
        "failure_reasons": dict(sorted(reasons.items())),
        "selection": info.selection,
        "sources": info.sources,
    }


def stats_text(stats: dict) -> str:
    """The table a person reads (``sound-captions dataset stats``)."""
    cfg = stats["feature_config"]
    lines = [
        f"dataset {stats['uri']}  features {cfg.get('height')}x{cfg.get('width')}x{cfg.get('channels')} "
        f"{cfg.get('kind')} ({stats['feature_hash']})  shards {stats['shards']}",
        f"coverage: {stats['obtained']} of {stats['requested']} requested items obtained",
        "splits: " + ", ".join(f"{s} {v['clips']} clips / {v['windows']} windows" for s, v in stats["splits"].items()),
        f"{'label':<32} {'train':>13} {'valid':>13} {'test':>13}  {'coverage':>13}",
        f"{'':<32} {'clips/windows':>13} {'clips/windows':>13} {'clips/windows':>13}  {'got/asked':>13}",
    ]
    for row in stats["labels"]:
        cells = [f"{row[s]['clips']}/{row[s]['windows']}" for s in SPLITS]
        lines.append(f"{row['name'][:32]:<32} {cells[0]:>13} {cells[1]:>13} {cells[2]:>13}  {row['obtained']:>6}/{row['requested']:<6}")
    neg = stats["negatives"]
    if neg.get("clips"):
        lines.append(f"{NEGATIVE:<32} {neg['clips']} clips / {neg['windows']} windows")
    reasons = stats["failure_reasons"]
    lines.append(f"failures: {stats['failures']}" + (" (" + ", ".join(f"{k}: {v}" for k, v in reasons.items()) + ")" if reasons else ""))
    return "\n".join(lines)


def collect_examples(uri: str, *, per_label: int = 6, split: str | None = None, seed: int = 0) -> dict[str, list[tuple[str, int, np.ndarray]]]:
    """label (mid, or :data:`NEGATIVE`) → up to ``per_label`` (clip_id, second, (H, W, C)
    spectrogram), at most one window per clip, chosen with ``seed``."""
    info = shards.load_dataset_info(uri)
    rng = random.Random(seed)
    wanted = list(info.vocabulary) + [NEGATIVE]
    pool = max(per_label * 3, per_label)
    candidates: dict[str, dict[str, tuple[str, int, np.ndarray]]] = {m: {} for m in wanted}
    uris = shards.shard_uris(uri, info)
    rng.shuffle(uris)
    for shard_uri in uris:
        table = shards.read_table(shard_uri)
        if split is not None:
            import pyarrow.compute as pc

            table = table.filter(pc.equal(table.column("split"), split))
        if table.num_rows == 0:
            continue
        specs = shards.spectrograms(table)
        clip_ids = table.column("clip_id").to_pylist()
        seconds = table.column("second").to_pylist()
        for i, labels in enumerate(table.column("labels").to_pylist()):
            for mid in (labels or [NEGATIVE]):
                slot = candidates.get(mid)
                if slot is None or len(slot) >= pool:
                    continue
                if clip_ids[i] not in slot or rng.random() < 0.3:
                    slot[clip_ids[i]] = (clip_ids[i], seconds[i], np.asarray(specs[i], dtype=np.float32))
        if all(len(c) >= pool for m, c in candidates.items() if m != NEGATIVE):
            break
    out = {}
    for mid in wanted:
        items = sorted(candidates[mid].values(), key=lambda x: (x[0], x[1]))
        rng.shuffle(items)
        if items or mid != NEGATIVE:
            out[mid] = items[:per_label]
    return out


def preview_grid(uri: str, out: str, *, per_label: int = 6, split: str | None = None, seed: int = 0) -> int:
    """Write a PNG grid (rows = labels, ``per_label`` columns) to ``out``; returns the number of
    spectrograms drawn. Empty cells mean a label has fewer examples."""
    import matplotlib

    matplotlib.use("Agg", force=False)

    info = shards.load_dataset_info(uri)
    examples = collect_examples(uri, per_label=per_label, split=split, seed=seed)
    rows = list(examples)
    fig = new_figure(1.7 * per_label + 1.6, 1.8 * len(rows) + 0.6, layout=None)
    axes = fig.subplots(len(rows), per_label, squeeze=False)
    drawn = 0
    for r, mid in enumerate(rows):
        name = info.vocabulary.get(mid, "negatives" if mid == NEGATIVE else mid)
        for c in range(per_label):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(f"{name}\n{'' if mid == NEGATIVE else mid}", fontsize=8)
            if c >= len(examples[mid]):
                ax.set_frame_on(False)
                continue
            clip_id, second, spec = examples[mid][c]
            ax.imshow(spec[:, :, 0], origin="lower", aspect="auto", cmap="magma")
            ax.set_title(f"{clip_id[:18]} s{second}", fontsize=6)
            drawn += 1
    cfg = info.feature_config
    fig.suptitle(f"{uri}  ({cfg.kind} {cfg.height}x{cfg.width}, {drawn} windows; frequency up, time right)", fontsize=8)
    fig.tight_layout()
    save_png(fig, out)
    return drawn
