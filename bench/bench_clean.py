"""Label cleaning on real sound: the real-sound corpus with 10 % of its clips' labels flipped on
purpose → ``dataset clean`` (the project's defaults) → where do the flips rank?

    python bench/bench_clean.py --corpus ~/.cache/sound-captions-realsounds/corpus \
        --work /tmp/cleanbench [--flip 0.10] [--folds 3] [--epochs 8] [--model compact]

* Classes: those of the real-sound benchmark (``bench_realsounds.pick_classes``, same defaults);
  every file of them is a clip of the dataset (``dataset build``, the project's defaults).
* Flips: a seeded ``--flip`` share of the clips (every split) gets another picked class's label,
  written with ``dataset clean --apply`` itself (relabel decisions), so the noisy dataset is an
  ordinary dataset version.
* Printed: the share of flips in the top 15 % (the issue's figure) and top 10 % of the ranking,
  cleanlab's issue flags (precision, recall), how many flips the suggestion restores (the true
  label back), the clean clips flagged, and the wall time per stage; ``--out`` writes them as
  JSON (``bench/results/``).

Rerun with the same ``--work`` and the dataset build is skipped (digest) and the fold scores are
reused (their key matches); ``--fresh-folds`` trains them again.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_realsounds import pick_classes  # noqa: E402 - the benchmark's class set

from sound_captions import storage  # noqa: E402
from sound_captions.clean.apply import apply_decisions  # noqa: E402
from sound_captions.clean.folds import clip_label_sets  # noqa: E402
from sound_captions.clean.options import CleanConfig  # noqa: E402
from sound_captions.clean.review import clean_dataset  # noqa: E402
from sound_captions.dataset import shards  # noqa: E402
from sound_captions.dataset.build import BuildOptions, build_dataset  # noqa: E402
from sound_captions.ontology import Ontology  # noqa: E402
from sound_captions.sources.manifest import read_manifest, write_manifest  # noqa: E402


def flip_labels(data: str, out: str, share: float, seed: int) -> dict[str, tuple[str, str]]:
    """``share`` of the labelled clips of ``data`` relabelled to another class → ``out``;
    returns clip id → (true, given)."""
    labels = clip_label_sets(data, ("train", "valid", "test"))
    classes = sorted({m for v in labels.values() for m in v})
    labelled = sorted(c for c, v in labels.items() if len(v) == 1)
    rng = random.Random(seed)
    chosen = rng.sample(labelled, round(share * len(labelled)))
    flips = {c: (labels[c][0], rng.choice([m for m in classes if m != labels[c][0]])) for c in chosen}
    decisions = out.rstrip("/") + "-flips.csv"
    with open(decisions, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["clip_id", "decision", "labels"])
        writer.writerows([c, "relabel", wrong] for c, (_, wrong) in flips.items())
    if not storage.exists(storage.join(out, shards.DATASET_JSON)):
        apply_decisions(data, decisions, out)
    return flips


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", required=True)
    p.add_argument("--work", default="/tmp/cleanbench")
    p.add_argument("--flip", type=float, default=0.10)
    p.add_argument("--folds", type=int, default=CleanConfig.folds)
    p.add_argument("--epochs", type=int, default=CleanConfig.epochs)
    p.add_argument("--model", default=CleanConfig.model)
    p.add_argument("--min-files", type=int, default=6)
    p.add_argument("--min-seconds", type=float, default=30.0)
    p.add_argument("--max-classes", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fresh-folds", action="store_true")
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    args = p.parse_args(argv)
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    timings: dict[str, float] = {}
    corpus = os.path.expanduser(args.corpus)
    work = os.path.abspath(args.work)
    os.makedirs(work, exist_ok=True)
    with open(os.path.join(corpus, "manifest.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    classes = pick_classes(rows, args.min_files, args.min_seconds, args.max_classes)
    ontology = Ontology.load()
    mids = {r["label"]: r["audioset_mid"] for r in rows}
    picked = [r for r in rows if r["label"] in classes]
    print(f"classes ({len(classes)}): {', '.join(classes)}; {len(picked)} files")

    t0 = time.perf_counter()
    manifest = os.path.join(work, "manifest.csv")
    write_manifest([(os.path.join(corpus, r["file"]), None, None, [ontology.name(mids[r["label"]])]) for r in picked], manifest)
    requests, failures = read_manifest(manifest)
    data = os.path.join(work, "dataset")
    report = build_dataset(requests, data, BuildOptions(seed=args.seed), source_failures=failures, sources=[manifest])
    timings["dataset build" + (" (cached)" if report.skipped else "")] = time.perf_counter() - t0
    print(f"dataset: {report.n_clips} clips, {report.n_windows} windows")

    t0 = time.perf_counter()
    noisy = os.path.join(work, f"noisy-{args.flip:g}-seed{args.seed}")
    flips = flip_labels(data, noisy, args.flip, args.seed)
    timings["flip (dataset clean --apply)"] = time.perf_counter() - t0

    review = os.path.join(work, f"review-{args.model}-{args.folds}f-{args.epochs}ep")
    if args.fresh_folds and os.path.isdir(review):
        shutil.rmtree(review)
    cfg = CleanConfig(folds=args.folds, epochs=args.epochs, model=args.model, seed=args.seed)
    t0 = time.perf_counter()
    result = clean_dataset(noisy, review, cfg, progress=print)
    timings["dataset clean (folds, scores, page)"] = time.perf_counter() - t0

    ranked = [c.clip_id for c in result.clips]
    n = len(ranked)

    def share_in_top(fraction: float) -> float:
        top = set(ranked[: int(np.ceil(fraction * n))])
        return sum(c in top for c in flips) / max(len(flips), 1)

    by_id = {c.clip_id: c for c in result.clips}
    flagged = {c.clip_id for c in result.clips if c.issue}
    restored = sum(by_id[c].suggestion == "relabel" and by_id[c].suggested_labels == (true,) for c, (true, _) in flips.items())
    figures = {
        "classes": classes, "clips": n, "flips": len(flips), "flip_share": args.flip, "config": cfg.to_dict(),
        "flips_in_top_15pct": share_in_top(0.15), "flips_in_top_10pct": share_in_top(0.10),
        "issue_flags": len(flagged),
        "issue_precision": len(flagged & set(flips)) / max(len(flagged), 1),
        "issue_recall": len(flagged & set(flips)) / max(len(flips), 1),
        "flips_restored_by_the_suggestion": restored / max(len(flips), 1),
        "clean_clips_with_a_suggested_change": sum(by_id[c].suggestion != "keep" for c in ranked if c not in flips),
        "median_rank_of_a_flip": float(np.median([ranked.index(c) + 1 for c in flips])),
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
    }  # fmt: skip
    print()
    print(f"{n} clips, {len(flips)} labels flipped ({args.flip:.0%}); {args.model}, {args.folds} folds × {args.epochs} epochs")
    print(f"  flips in the top 15 %: {figures['flips_in_top_15pct']:.1%}   top 10 %: {figures['flips_in_top_10pct']:.1%}   median rank {figures['median_rank_of_a_flip']:.0f} of {n}")
    print(f"  cleanlab issue flags: {len(flagged)}, precision {figures['issue_precision']:.2f}, recall {figures['issue_recall']:.2f}")
    print(f"  the suggestion restores the true label of {figures['flips_restored_by_the_suggestion']:.1%} of the flips; {figures['clean_clips_with_a_suggested_change']} clean clips get a suggested change")
    for stage, seconds in timings.items():
        print(f"  {stage:<44} {seconds:8.1f} s")
    print(f"review page: {review}/review.html")
    if args.out:
        storage.write_text(args.out, json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
