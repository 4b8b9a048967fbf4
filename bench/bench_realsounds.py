"""Real-sound benchmark: real recorded clips → dataset → train → caption stitched test audio → score.

    python bench/bench_realsounds.py --corpus ~/.cache/sound-captions-realsounds/corpus \
        --work /tmp/realbench [--models 'default,baseline[features="128x128"]'] [--epochs 30] [--baseline-epochs N]

``--models`` names registry architectures, ``default`` (TrainConfig's default) or an architecture with
hyper-parameter overrides in brackets, values as JSON: ``compact[context=1;head_units=128]``. The
bracket key ``teacher`` distils from another entry's bundle (or a bundle path) instead:
``baseline,mobilenet[teacher="baseline"]`` trains mobilenet with ``train --teacher`` of the
baseline run (put the teacher first, or reuse its run with ``--reuse-runs``). The bracket key
``augment`` sets the batch augmentation: ``baseline[augment={"spec_time_masks":2,"mixup_alpha":0.2}]``.
The bracket key ``features`` trains on spectrograms of another shape (mel bins × frames per
second, a dataset of its own built from the same split): ``baseline,baseline[features="64x64"]``;
``--feature-shape`` sets it for every entry without one.

The corpus is the one ``build_realsounds.sh`` (outside this repository) makes: ``manifest.csv``
with ``file,label,...`` rows and 16 kHz mono WAV clips. Nothing here is committed audio.

* Classes: every label with at least ``--min-files`` files and ``--min-seconds`` seconds (the
  largest first, at most ``--max-classes``); labels not picked provide the ambience material.
* Split BY FILE, seeded: per class ``--test-fraction`` of the files (at least 2) are held out
  for the test audio; the rest form the training manifest (dataset build splits those again
  into train/valid by clip, as the project does).
* Test audio: held-out clips of 1-6 s placed on a timeline, some overlapping the previous one,
  separated by gaps of digital silence or of quiet ambience (a non-picked clip, low-passed and
  scaled to a random RMS in -50…-35 dBFS). Truth per second: a clip's label is on in second k
  when the clip covers the whole second and that second of the clip is above -45 dBFS RMS.
* Scores: per-second micro/macro F1 of the thresholded ``.scores.parquet`` and of the ``.vtt``
  cues; false caption-seconds per hour of silence and of ambience; a per-class table; wall
  time per stage; inference windows/s of the model alone (batch 256, 2 threads).

Rerun with the same ``--work`` and the dataset build is skipped (the build digest matches).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import random
import re
import sys
import time
import wave
from collections import defaultdict

import numpy as np
import pyarrow.parquet as pq

from sound_captions import storage
from sound_captions.bundle import load_bundle, save_bundle
from sound_captions.caption.pipeline import CaptionOptions, caption_library
from sound_captions.dataset.build import BuildOptions, build_dataset
from sound_captions.demo import vtt_activity
from sound_captions.features import FeatureConfig
from sound_captions.metrics import segment_metrics
from sound_captions.ontology import Ontology
from sound_captions.sources.manifest import read_manifest, write_manifest
from sound_captions.train import BUNDLE_NAME, TrainConfig, train

SR = 16_000


def read_wav(path: str) -> np.ndarray:
    with wave.open(path, "rb") as w:
        assert w.getframerate() == SR and w.getnchannels() == 1 and w.getsampwidth() == 2, path
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0


def write_wav(path: str, x: np.ndarray) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pcm = (np.clip(x, -1.0, 1.0 - 1 / 32768) * 32768).astype("<i2")
    with wave.open(path + ".tmp", "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes(pcm.tobytes())
    os.replace(path + ".tmp", path)


def rms_dbfs(x: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64))) + 1e-12))


def lowpass(x: np.ndarray, cutoff_hz: float = 500.0) -> np.ndarray:
    """One-pole low-pass, twice (distant, muffled ambience)."""
    a = np.exp(-2 * np.pi * cutoff_hz / SR)
    for _ in range(2):
        y = np.empty_like(x)
        acc = 0.0
        # vectorised enough for a few seconds: scipy-free IIR via cumulative trick is overkill
        for i in range(0, len(x), SR):
            seg = x[i : i + SR]
            out = np.empty_like(seg)
            for j, v in enumerate(seg):
                acc = a * acc + (1 - a) * v
                out[j] = acc
            y[i : i + SR] = out
        x = y
    return x


def pick_classes(rows: list[dict], min_files: int, min_seconds: float, max_classes: int) -> list[str]:
    files, seconds = defaultdict(int), defaultdict(float)
    for r in rows:
        files[r["label"]] += 1
        seconds[r["label"]] += float(r["duration_s"])
    ok = [lab for lab in files if files[lab] >= min_files and seconds[lab] >= min_seconds]
    ok.sort(key=lambda lab: -seconds[lab])
    return ok[:max_classes]


def split_by_file(rows: list[dict], classes: list[str], test_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    rng = random.Random(seed)
    train_rows, test_rows = [], []
    for lab in classes:
        mine = sorted((r for r in rows if r["label"] == lab), key=lambda r: r["file"])
        rng.shuffle(mine)
        n_test = max(2, round(test_fraction * len(mine)))
        test_rows += mine[:n_test]
        train_rows += mine[n_test:]
    return train_rows, test_rows


def make_test_audio(corpus: str, test_rows: list[dict], ambience_rows: list[dict], out_dir: str, n_videos: int, seed: int, labels: dict[str, str]) -> dict:
    """Stitched test audio + per-second truth ({'labels': [[mid..]..], 'gap': ['', 'silence', 'ambience']})."""
    rng = random.Random(seed)
    clips = list(test_rows)
    rng.shuffle(clips)
    per_video = [clips[i::n_videos] for i in range(n_videos)]
    ambience = [read_wav(os.path.join(corpus, r["file"])) for r in ambience_rows[:12]]
    ambience = [lowpass(a[: 6 * SR]) for a in ambience if len(a) >= SR]
    truth = {}
    for v, items in enumerate(per_video):
        pieces: list[tuple[int, np.ndarray, str | None]] = []  # (start second, audio, mid or None)
        gaps: dict[int, str] = {}
        t = 0
        last_end = 0
        for item in items:
            x = read_wav(os.path.join(corpus, item["file"]))
            length = max(1, min(len(x) // SR, rng.randint(1, 6)))
            offset = rng.randint(0, max(0, len(x) // SR - length)) * SR
            x = x[offset : offset + length * SR]
            if pieces and rng.random() < 0.25 and last_end - t >= 2:
                start = last_end - rng.randint(1, 2)  # overlap the previous sound by 1-2 s
                x = x * 0.7
            else:
                gap = rng.randint(2, 4)
                kind = "silence" if rng.random() < 0.5 or not ambience else "ambience"
                if kind == "ambience":
                    amb = rng.choice(ambience)
                    seg = np.resize(amb, gap * SR).astype(np.float32)
                    target = rng.uniform(-50.0, -35.0)
                    seg = seg * 10 ** ((target - rms_dbfs(seg)) / 20)
                    pieces.append((last_end, seg, None))
                for k in range(last_end, last_end + gap):
                    gaps[k] = kind
                start = last_end + gap
            pieces.append((start, x, labels[item["label"]]))
            t = start
            last_end = max(last_end, start + length)
        tail = 2
        for k in range(last_end, last_end + tail):
            gaps[k] = "silence"
        n = last_end + tail
        audio = np.zeros(n * SR, dtype=np.float32)
        sec_labels: list[set[str]] = [set() for _ in range(n)]
        for start, x, mid in pieces:
            audio[start * SR : start * SR + len(x)] += x
            if mid is None:
                continue
            for k in range(len(x) // SR):
                if rms_dbfs(x[k * SR : (k + 1) * SR]) > -45.0:
                    sec_labels[start + k].add(mid)
        for k in range(n):  # a gap second overlapped by a sound is not a gap
            if sec_labels[k] or any(s <= k < s + len(x) // SR for s, x, m in pieces if m):
                gaps.pop(k, None)
        name = f"test-{v:02d}"
        write_wav(os.path.join(out_dir, name + ".wav"), audio)
        truth[name] = {"labels": [sorted(s) for s in sec_labels], "gap": [gaps.get(k, "") for k in range(n)]}
    return truth


def feature_shape(text: str) -> tuple[int, int]:
    """``'64x64'`` → (64, 64): mel bins × frames per second (read as the one-channel preset)."""
    try:
        cfg = FeatureConfig.preset(f"{text.strip()}x1")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW such as 64x64, got {text!r}") from None
    return cfg.height, cfg.width


def parse_model_specs(text: str) -> list[tuple[str, str, dict]]:
    """``'default,compact[context=1;head_units=128]'`` → [(key, architecture, hparams)]."""
    specs = []
    for item in re.split(r",(?![^\[]*\])", text):
        m = re.fullmatch(r"\s*([\w-]+)(?:\[(.*)\])?\s*", item)
        if not m:
            raise SystemExit(f"--models: cannot read {item!r}")
        name, body = m.group(1), m.group(2)
        model = TrainConfig.model if name == "default" else name
        hparams = {}
        for pair in filter(None, (body or "").split(";")):
            key, _, value = pair.partition("=")
            hparams[key.strip()] = json.loads(value)
        specs.append((name if body is None else item.strip(), model, hparams))
    return specs


def run_name(model: str, hparams: dict) -> str:
    """A folder name for one architecture + overrides."""
    return model + "".join(f"-{k}{json.dumps(v).replace(' ', '')}" for k, v in sorted(hparams.items()))


def windows_per_second(bundle, batch: int = 256, repeats: int = 3) -> float:
    """Seconds of audio the model scores per wall second, computed as the caption run does: a
    context model encodes each second once and its head reads the neighbours' embeddings."""
    import torch

    from sound_captions.context import classify_embeddings, sequence_index

    torch.set_num_threads(2)
    model = bundle.build_model()
    x = torch.randn(batch, *bundle.input_shape)
    index = sequence_index(batch, bundle.context)

    def run():
        if not bundle.context:
            return model(x)
        e = model.embed(x)
        return classify_embeddings(model, e, index, e[0])

    with torch.inference_mode():
        run()
        t0 = time.perf_counter()
        for _ in range(repeats):
            run()
    return batch * repeats / (time.perf_counter() - t0)


def score(out: str, truth: dict, bundle) -> dict:
    labels = bundle.labels
    caption_to_label = {text: mid for mid, text in bundle.caption_text.items()}
    index = {m: j for j, m in enumerate(labels)}
    yt, ys, yv, gaps = [], [], [], []
    for name, tr in truth.items():
        n = len(tr["labels"])
        t = np.zeros((n, len(labels)), dtype=bool)
        for k, mids in enumerate(tr["labels"]):
            for mid in mids:
                t[k, index[mid]] = True
        table = pq.read_table(storage.join(out, name + ".scores.parquet")).to_pydict()
        s = np.zeros_like(t)
        for mid, j in index.items():
            col = np.asarray(table[mid][:n])
            s[: len(col), j] = col >= bundle.thresholds[mid]
        v = vtt_activity(storage.read_text(storage.join(out, name + ".vtt")), caption_to_label, labels, n)
        yt.append(t)
        ys.append(s)
        yv.append(v)
        gaps += tr["gap"]
    yt, ys, yv, gaps = np.concatenate(yt), np.concatenate(ys), np.concatenate(yv), np.asarray(gaps)
    result = {}
    for key, pred in (("scores", ys), ("vtt", yv)):
        m = segment_metrics(yt, pred, labels)
        present = [mid for mid in labels if yt[:, index[mid]].any()]
        result[key] = {
            "micro_f1": m["overall"]["f_measure"],
            # a class with truth but no output has F1 0 (sed_eval gives nan: precision 0/0)
            "macro_f1": float(np.mean([np.nan_to_num(m["class_wise"][mid]["f_measure"]) for mid in present])),
            "class_f1": {mid: (float(np.nan_to_num(m["class_wise"][mid]["f_measure"])) if mid in present else float("nan")) for mid in labels},
            "captionable": {mid: mid in bundle.caption_text for mid in labels},
        }
        for kind in ("silence", "ambience"):
            sel = gaps == kind
            false = int(pred[sel].any(axis=1).sum())
            result[key][f"false_s_per_h_{kind}"] = 3600.0 * false / max(1, int(sel.sum()))
            result[key][f"{kind}_seconds"] = int(sel.sum())
    result["n_seconds"] = int(len(gaps))
    return result


def gated(bundle, run_dir: str, gate_dbfs: float):
    """A copy of ``bundle`` with the energy gate ``gate_dbfs``, saved beside it → (bundle, URI)."""
    bundle = dataclasses.replace(bundle, gate_dbfs=gate_dbfs)
    uri = os.path.join(run_dir, f"bundle-gate{gate_dbfs:g}.pt")
    save_bundle(bundle, uri)
    return bundle, uri


def print_results(results: dict, timings: dict, heading: str, *, width: int = 22, name_width: int = 30, stage_width: int = 44) -> None:
    """The side-by-side table of :func:`score` results (+ windows/s where measured), the per-class
    ``.vtt`` F1 and the wall time per stage."""
    print(f"\n{heading}")
    print(f"{'':<34}" + "".join(f"{k:>{width}}" for k in results))
    for metric in ("micro_f1", "macro_f1", "false_s_per_h_silence", "false_s_per_h_ambience"):
        for src in ("scores", "vtt"):
            print(f"{src + ' ' + metric:<34}" + "".join(f"{r[src][metric]:>{width}.3f}" for r in results.values()))
    if results and all("windows_per_s" in r for r in results.values()):
        print(f"{'inference windows/s (b256, 2 thr)':<34}" + "".join(f"{r['windows_per_s']:>{width}.0f}" for r in results.values()))
    if results:
        first = next(iter(results.values()))
        print(f"(silence seconds {first['vtt']['silence_seconds']}, ambience seconds {first['vtt']['ambience_seconds']})")
        print("\nper-class caption F1 (.vtt)")
        for mid, lname in first["label_names"].items():
            print(f"  {lname:<{name_width}}" + "".join(f"{r['vtt']['class_f1'].get(mid, float('nan')):>{width}.3f}" for r in results.values()))
    print("\nwall time per stage")
    for k, v in timings.items():
        print(f"  {k:<{stage_width}} {v:8.1f} s")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", required=True)
    p.add_argument("--work", default="/tmp/realbench")
    p.add_argument("--models", default='default,baseline[features="128x128"]', help="'default' = TrainConfig's default model on FeatureConfig's default features; the study's baseline ran on 128x128")
    p.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    p.add_argument("--baseline-epochs", type=int, default=None)
    p.add_argument("--min-files", type=int, default=6)
    p.add_argument("--min-seconds", type=float, default=30.0)
    p.add_argument("--max-classes", type=int, default=20)
    p.add_argument("--test-fraction", type=float, default=0.3)
    p.add_argument("--videos", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gate-dbfs", type=float, default=None, help="caption with a copy of each bundle gated at this level (ModelBundle.gate_dbfs)")
    p.add_argument("--reuse-runs", action="store_true", help="use a bundle already trained in --work instead of training again")
    p.add_argument("--level-floor-dbfs", type=float, default=None, help="level-preserving features (FeatureConfig.level_floor_dbfs); default: today's per-window standardisation")
    p.add_argument("--feature-shape", type=feature_shape, default=None, metavar="HxW", help="mel bins x frames per second (FeatureConfig height/width), e.g. 64x64; default: FeatureConfig's")
    args = p.parse_args(argv)
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    timings: dict[str, float] = {}
    corpus = os.path.expanduser(args.corpus)
    work = os.path.abspath(args.work)
    with open(os.path.join(corpus, "manifest.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    classes = pick_classes(rows, args.min_files, args.min_seconds, args.max_classes)
    ontology = Ontology.load()
    mids = {r["label"]: r["audioset_mid"] for r in rows}
    train_rows, test_rows = split_by_file(rows, classes, args.test_fraction, args.seed)
    ambience_rows = sorted((r for r in rows if r["label"] not in classes and r["label"] in ("Wind", "Rain", "Jet engine", "Vacuum cleaner", "Engine", "Air conditioning", "Hum", "Traffic noise, roadway noise")), key=lambda r: r["file"])
    print(f"classes ({len(classes)}): {', '.join(classes)}")
    print(f"train files {len(train_rows)}, held-out test files {len(test_rows)}, ambience files {len(ambience_rows)} ({sorted({r['label'] for r in ambience_rows})})")

    manifest = os.path.join(work, "train_manifest.csv")
    os.makedirs(work, exist_ok=True)
    write_manifest([(os.path.join(corpus, r["file"]), None, None, [ontology.name(mids[r["label"]])]) for r in train_rows], manifest)
    requests, failures = read_manifest(manifest)
    datasets: dict[tuple | None, tuple[str, str, FeatureConfig]] = {}

    def dataset_for(shape: tuple[int, int] | None) -> tuple[str, str, FeatureConfig]:
        """(dataset folder, run-name suffix, feature config) for mel bins × frames ``shape``
        (None: FeatureConfig's default), built on first use; a rebuild is skipped by digest."""
        if shape in datasets:
            return datasets[shape]
        dims = {} if shape is None else {"height": shape[0], "width": shape[1]}
        cfg = FeatureConfig(level_floor_dbfs=args.level_floor_dbfs, **dims)
        suffix = ("" if args.level_floor_dbfs is None else f"-level{args.level_floor_dbfs:g}") + ("" if shape is None else "-{}x{}".format(*shape))
        folder = os.path.join(work, "dataset" + suffix)
        t0 = time.perf_counter()
        report = build_dataset(requests, folder, BuildOptions(seed=args.seed, feature_config=cfg), source_failures=failures, sources=[manifest])
        timings[f"dataset build {cfg.height}x{cfg.width}" + (" (cached)" if report.skipped else "")] = time.perf_counter() - t0
        print(f"dataset {cfg.height}x{cfg.width}: {report.n_clips} clips, {report.n_windows} windows, {report.n_failed} failed{' (cached)' if report.skipped else ''}")
        datasets[shape] = (folder, suffix, cfg)
        return datasets[shape]

    t0 = time.perf_counter()
    videos = os.path.join(work, "videos")
    truth_path = os.path.join(work, "truth.json")
    truth = make_test_audio(corpus, test_rows, ambience_rows, videos, args.videos, args.seed + 1, mids)
    storage.write_text(truth_path, json.dumps(truth))
    timings["test audio"] = time.perf_counter() - t0

    results = {}
    for name, model, hparams in parse_model_specs(args.models):
        epochs = args.baseline_epochs if (model == "baseline" and args.baseline_epochs) else args.epochs
        key = name if name == model or "[" in name else f"{name}={model}"
        hparams = dict(hparams)
        shape = feature_shape(hparams.pop("features")) if "features" in hparams else args.feature_shape
        dataset, suffix, _ = dataset_for(shape)
        t0 = time.perf_counter()
        teacher = hparams.pop("teacher", None)
        augment = hparams.pop("augment", {})  # batch augmentation (BatchAugmentConfig fields), not a model setting
        teacher_uri = None
        if teacher:
            teacher_uri = teacher if os.path.exists(str(teacher)) else os.path.join(work, f"run-{teacher}{suffix}", BUNDLE_NAME)
            if not os.path.exists(teacher_uri):
                raise SystemExit(f"--models: teacher {teacher!r}: no bundle at {teacher_uri} (train it first in this --work)")
        distil = f"-distil-{os.path.basename(os.path.dirname(teacher_uri))}" if teacher_uri else ""
        aug = run_name("", {"augment": augment}) if augment else ""
        run_dir = os.path.join(work, f"run-{run_name(model, hparams)}{aug}{distil}{suffix}")
        bundle_uri = os.path.join(run_dir, BUNDLE_NAME)
        if args.reuse_runs and os.path.exists(bundle_uri):
            bundle = load_bundle(bundle_uri)
            epochs = bundle.training.get("epochs", epochs)
        else:
            bundle = train(TrainConfig(data=dataset, out=run_dir, model=model, hparams=hparams, epochs=epochs, seed=args.seed, max_failures=0, teacher=teacher_uri, augment=augment), name=f"realbench-{model}")  # noqa: E501
        timings[f"{key} train ({epochs} epochs)"] = time.perf_counter() - t0
        if args.gate_dbfs is not None:
            bundle, bundle_uri = gated(bundle, run_dir, args.gate_dbfs)
            suffix += f"-gate{args.gate_dbfs:g}"
        t0 = time.perf_counter()
        out = os.path.join(work, f"captions-{run_name(model, hparams)}{aug}{distil}{suffix}")
        caption_library([videos], CaptionOptions(out=out, model=bundle_uri, force=True))
        timings[f"{key} caption"] = time.perf_counter() - t0
        r = score(out, truth, bundle)
        r["windows_per_s"] = windows_per_second(bundle)
        r["epochs"] = epochs
        r["label_names"] = bundle.label_names
        results[key] = r

    n_s = next(iter(results.values()))["n_seconds"] if results else 0
    print_results(results, timings, f"per-second scores on {n_s} test seconds ({args.videos} stitched files)")
    storage.write_text(os.path.join(work, "results.json"), json.dumps({"classes": classes, "results": results, "timings": timings}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
