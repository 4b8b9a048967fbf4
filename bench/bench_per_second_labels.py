"""Per-second labels benchmark: the same stitched real-sound training sequences, labelled per
second (an events manifest) vs with clip labels (a manifest) → train both → caption the same
held-out stitched test audio → score both.

    python bench/bench_per_second_labels.py --corpus ~/.cache/sound-captions-realsounds/corpus \
        --work /tmp/perseconds [--epochs 12] [--train-sequences 40] [--gate-dbfs -33] [--reuse-runs]

The acceptance check of per-second labels: on real sound, training with the event times of
stitched training sequences must score at least as well as training with only the clip labels
of the same sequences (what a user without event times has).

Everything but the training labels comes from ``bench/bench_realsounds.py`` (imported, same
arguments and defaults): the corpus ``build_realsounds.sh`` makes, the classes (``--min-files``,
``--min-seconds``, ``--max-classes``), the seeded by-file split (``--test-fraction``, ``--seed``),
the stitched audio, the scoring.

* Training sequences: the TRAINING files only, stitched by ``make_test_audio`` (seed + 2,
  ``--train-sequences`` sequences, every training file used once): clips of 1-6 s, a quarter
  overlapping the previous one, gaps of digital silence or quiet ambience. WAVs in
  ``<work>/train-seq/``. Their per-second truth gives two label files for the same WAVs:

  - ``train_events.csv`` (``source,onset_s,offset_s,label``): one row per contiguous run of
    seconds in which a class is on → ``sources.events.read_events`` (per-second labels);
  - ``train_clip_manifest.csv`` (``source,start_s,end_s,labels``, no start/end): every class
    that occurs anywhere in the sequence → ``sources.manifest.read_manifest`` (clip labels).

  The script checks that the events, read back, give every second exactly its truth labels
  (``dataset.stages.second_labels``) and that both arms get the same train/valid/test split.
* Both datasets: ``build_dataset`` with the same ``BuildOptions(seed)``; both runs: ``train``
  with the project's default model (or ``--model``) and defaults except ``--epochs`` and seed.
* Test audio: the held-out files, ``--videos`` stitched files (seed + 1), exactly as
  bench_realsounds; captioned with each bundle (gated at ``--gate-dbfs`` if given).
* Compared: per-second micro/macro F1 of the thresholded scores and of the ``.vtt`` cues, false
  caption-seconds per hour of silence and of ambience, per-class ``.vtt`` F1, wall time per
  stage. Written to ``<work>/results.json``.

Rerun with the same ``--work`` and the dataset builds are skipped (the build digests match);
``--reuse-runs`` re-captions bundles already trained in ``--work``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_realsounds as br  # noqa: E402

from sound_captions import storage  # noqa: E402
from sound_captions.bundle import load_bundle  # noqa: E402
from sound_captions.caption.pipeline import CaptionOptions, caption_library  # noqa: E402
from sound_captions.dataset.build import BuildOptions, assign_splits, build_dataset, training_events  # noqa: E402
from sound_captions.dataset.stages import second_labels  # noqa: E402
from sound_captions.ontology import Ontology  # noqa: E402
from sound_captions.sources.events import EVENTS_COLUMNS, read_events  # noqa: E402
from sound_captions.sources.manifest import read_manifest, write_manifest  # noqa: E402
from sound_captions.train import BUNDLE_NAME, TrainConfig, train  # noqa: E402

ARMS = ("per-second labels", "clip labels")


def label_runs(sec_labels: list[list[str]]) -> list[tuple[int, int, str]]:
    """Per-second truth → (onset second, offset second, mid): one per contiguous run of seconds
    in which a class is on, sorted by onset then mid."""
    runs = []
    for mid in sorted({m for s in sec_labels for m in s}):
        k = 0
        while k < len(sec_labels):
            if mid in sec_labels[k]:
                j = k
                while j < len(sec_labels) and mid in sec_labels[j]:
                    j += 1
                runs.append((k, j, mid))
                k = j
            else:
                k += 1
    return sorted(runs)


def write_events(rows: list[tuple[str, int, int, str]], uri: str) -> None:
    import io

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(EVENTS_COLUMNS)
    for source, onset, offset, mid in rows:
        writer.writerow([source, f"{onset:g}", f"{offset:g}", mid])
    storage.write_text(uri, out.getvalue())


def check_events(requests, truth: dict, seq_dir: str, ontology: Ontology, min_overlap_s: float) -> None:
    """Every second of every sequence, read back through read_events and the build's own
    per-second contract, must carry exactly its truth labels."""
    by_source = {r.source: r for r in requests}
    for name, tr in truth.items():
        if not any(tr["labels"]):
            continue
        r = by_source[os.path.join(seq_dir, name + ".wav")]
        events = training_events(r, ontology)
        for k, want in enumerate(tr["labels"]):
            got = second_labels(events, float(k), min_overlap_s, list(r.labels))
            if sorted(got) != sorted(want):
                raise SystemExit(f"events check: {name} second {k}: events give {got}, truth {want}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", required=True)
    p.add_argument("--work", default="/tmp/perseconds")
    p.add_argument("--model", default=TrainConfig.model, help="architecture of both runs (default: TrainConfig's)")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--min-files", type=int, default=6)
    p.add_argument("--min-seconds", type=float, default=30.0)
    p.add_argument("--max-classes", type=int, default=20)
    p.add_argument("--test-fraction", type=float, default=0.3)
    p.add_argument("--videos", type=int, default=6)
    p.add_argument("--train-sequences", type=int, default=40, help="stitched training sequences (each training file goes into one)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gate-dbfs", type=float, default=None, help="caption with a copy of each bundle gated at this level (ModelBundle.gate_dbfs)")
    p.add_argument("--reuse-runs", action="store_true", help="use bundles already trained in --work instead of training again")
    args = p.parse_args(argv)
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    timings: dict[str, float] = {}
    corpus = os.path.expanduser(args.corpus)
    work = os.path.abspath(args.work)
    os.makedirs(work, exist_ok=True)
    with open(os.path.join(corpus, "manifest.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    classes = br.pick_classes(rows, args.min_files, args.min_seconds, args.max_classes)
    ontology = Ontology.load()
    mids = {r["label"]: r["audioset_mid"] for r in rows}
    train_rows, test_rows = br.split_by_file(rows, classes, args.test_fraction, args.seed)
    ambience_rows = sorted((r for r in rows if r["label"] not in classes and r["label"] in ("Wind", "Rain", "Jet engine", "Vacuum cleaner", "Engine", "Air conditioning", "Hum", "Traffic noise, roadway noise")), key=lambda r: r["file"])
    print(f"classes ({len(classes)}): {', '.join(classes)}")
    print(f"train files {len(train_rows)}, held-out test files {len(test_rows)}, ambience files {len(ambience_rows)} ({sorted({r['label'] for r in ambience_rows})})")
    if args.train_sequences > len(train_rows):
        raise SystemExit(f"--train-sequences {args.train_sequences} > {len(train_rows)} training files")

    # training sequences from the training files only, and their two label files
    t0 = time.perf_counter()
    seq_dir = os.path.join(work, "train-seq")
    seq_truth = br.make_test_audio(corpus, train_rows, ambience_rows, seq_dir, args.train_sequences, args.seed + 2, mids)
    storage.write_text(os.path.join(work, "train_truth.json"), json.dumps(seq_truth))
    event_rows, clip_rows, empty = [], [], []
    for name, tr in seq_truth.items():
        source = os.path.join(seq_dir, name + ".wav")
        runs = label_runs(tr["labels"])
        if not runs:  # nothing audible: no events, so no clip labels either (not an explicit negative)
            empty.append(name)
            continue
        event_rows += [(source, onset, offset, mid) for onset, offset, mid in runs]
        clip_rows.append((source, None, None, list(dict.fromkeys(mid for _, _, mid in runs))))  # first onset first
    events_csv = os.path.join(work, "train_events.csv")
    clip_csv = os.path.join(work, "train_clip_manifest.csv")
    write_events(event_rows, events_csv)
    write_manifest(clip_rows, clip_csv)
    seq_seconds = sum(len(tr["labels"]) for tr in seq_truth.values())
    on_seconds = sum(1 for tr in seq_truth.values() for s in tr["labels"] if s)
    pairs_true = sum(len(s) for tr in seq_truth.values() for s in tr["labels"])
    pairs_clip = sum(len(labels) * len(seq_truth[os.path.basename(src)[:-4]]["labels"]) for src, _, _, labels in clip_rows)
    seq_stats = {
        "sequences": len(seq_truth), "seconds": seq_seconds, "seconds_with_a_class": on_seconds,
        "event_rows": len(event_rows), "empty_sequences": empty,
        "positive_label_seconds_events": pairs_true, "positive_label_seconds_clip": pairs_clip,
        "classes_per_sequence": sum(len(r[3]) for r in clip_rows) / max(1, len(clip_rows)),
    }
    timings["training sequences"] = time.perf_counter() - t0
    print(
        f"training sequences: {len(seq_truth)} ({seq_seconds} s, {on_seconds} s with a class, {len(event_rows)} event rows, "
        f"{seq_stats['classes_per_sequence']:.1f} classes per sequence; positive label-seconds {pairs_true} per-second vs {pairs_clip} clip)"
    )

    options = BuildOptions(seed=args.seed)
    ev_requests, ev_failures = read_events(events_csv, ontology)
    clip_requests, clip_failures = read_manifest(clip_csv, ontology)
    if ev_failures or clip_failures:
        raise SystemExit(f"label files: {ev_failures + clip_failures}")
    check_events(ev_requests, seq_truth, seq_dir, ontology, options.event_min_overlap_s)
    split_ev = assign_splits(ev_requests, options.split_fractions, options.seed)
    split_clip = assign_splits(clip_requests, options.split_fractions, options.seed)
    if split_ev != split_clip:
        raise SystemExit("the two arms would get different train/valid/test splits")
    print(f"events check: every second of {len(ev_requests)} sequences gets its truth labels; splits identical "
          f"({sum(v == 'train' for v in split_ev.values())} train / {sum(v == 'valid' for v in split_ev.values())} valid / {sum(v == 'test' for v in split_ev.values())} test sequences)")

    datasets = {}
    for arm, requests, src, folder in ((ARMS[0], ev_requests, events_csv, "dataset-events"), (ARMS[1], clip_requests, clip_csv, "dataset-clip")):
        t0 = time.perf_counter()
        datasets[arm] = os.path.join(work, folder)
        report = build_dataset(requests, datasets[arm], options, sources=[src])
        timings[f"{arm}: dataset build" + (" (cached)" if report.skipped else "")] = time.perf_counter() - t0
        print(f"{arm} dataset: {report.n_clips} clips, {report.n_windows} windows, {report.n_failed} failed{' (cached)' if report.skipped else ''}")

    t0 = time.perf_counter()
    videos = os.path.join(work, "videos")
    truth = br.make_test_audio(corpus, test_rows, ambience_rows, videos, args.videos, args.seed + 1, mids)
    storage.write_text(os.path.join(work, "truth.json"), json.dumps(truth))
    timings["test audio"] = time.perf_counter() - t0

    results = {}
    for arm, folder in zip(ARMS, ("events", "clip"), strict=True):
        epochs = args.epochs
        run_dir = os.path.join(work, f"run-{folder}-{args.model}")
        bundle_uri = os.path.join(run_dir, BUNDLE_NAME)
        t0 = time.perf_counter()
        if args.reuse_runs and os.path.exists(bundle_uri):
            bundle = load_bundle(bundle_uri)
            epochs = bundle.training.get("epochs", epochs)
            key = f"{arm}: train (reused, {epochs} epochs)"
        else:
            bundle = train(TrainConfig(data=datasets[arm], out=run_dir, model=args.model, epochs=epochs, seed=args.seed, max_failures=0), name=f"perseconds-{folder}")
            key = f"{arm}: train ({epochs} epochs)"
        timings[key] = time.perf_counter() - t0
        suffix = ""
        if args.gate_dbfs is not None:
            bundle, bundle_uri = br.gated(bundle, run_dir, args.gate_dbfs)
            suffix = f"-gate{args.gate_dbfs:g}"
        t0 = time.perf_counter()
        out = os.path.join(work, f"captions-{folder}-{args.model}{suffix}")
        caption_library([videos], CaptionOptions(out=out, model=bundle_uri, force=True))
        timings[f"{arm}: caption"] = time.perf_counter() - t0
        r = br.score(out, truth, bundle)
        r["epochs"] = epochs
        r["label_names"] = bundle.label_names
        r["thresholds"] = dict(bundle.thresholds)
        results[arm] = r

    first = results[ARMS[0]]
    br.print_results(
        results, timings,
        f"per-second scores on {first['n_seconds']} test seconds ({args.videos} stitched files), model {args.model}, {args.epochs} epochs"
        + ("" if args.gate_dbfs is None else f", gate {args.gate_dbfs:g} dBFS"),
        width=20, name_width=32, stage_width=48,
    )
    doc = {"classes": classes, "model": args.model, "epochs": args.epochs, "gate_dbfs": args.gate_dbfs, "seed": args.seed,
           "training_sequences": seq_stats, "results": results, "timings": timings}
    text = json.dumps(doc, indent=1, default=float)
    storage.write_text(os.path.join(work, "results.json"), text)
    gate = "" if args.gate_dbfs is None else f"-gate{args.gate_dbfs:g}"
    copy = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", f"per-second-labels-2026-12-04-{args.model}-{args.epochs}ep{gate}.json")
    storage.write_text(copy, text)
    print(f"\nresults: {os.path.join(work, 'results.json')} (copied to {copy})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
