"""The whole flow on one machine, on generated media with known per-second truth.

    make corpus (lavfi) ─► build dataset ─► train ─► make test videos ─► caption ─► score

Three synthetic sound kinds stand in for real AudioSet classes (see ``testing/media.py``):
pulsed tones → "Beep, bleep", chords → "Music", white noise → "White noise"; silence carries no
label. The score compares the cues of the written ``.vtt`` files, second by second, with the
truth the videos were made from.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import numpy as np

from sound_captions import storage
from sound_captions.caption.cues import read_cues
from sound_captions.caption.pipeline import CaptionOptions, CaptionRun, caption_library
from sound_captions.caption.postprocess import PostprocessConfig
from sound_captions.caption.style import base_caption
from sound_captions.dataset.build import BuildOptions, BuildReport, build_dataset
from sound_captions.features import FeatureConfig
from sound_captions.generated import KIND_LABELS, make_corrupt, make_media, per_second_truth
from sound_captions.metrics import segment_metrics
from sound_captions.ontology import Ontology
from sound_captions.sources.manifest import read_manifest, write_manifest
from sound_captions.train import BUNDLE_NAME, TrainConfig, train

log = logging.getLogger(__name__)

# Test videos: (name, segments). Same-kind segments are never separated by a gap of one second
# (gap merging would bridge it, as it should for a real flicker).
TEST_VIDEOS: tuple[tuple[str, tuple[tuple[str, int], ...]], ...] = (
    ("lecture/intro", (("silence", 2), ("beep", 4), ("silence", 3), ("music", 8), ("noise", 4), ("silence", 3))),
    ("lecture/part-2", (("music", 6), ("beep", 3), ("music", 5), ("silence", 2), ("noise", 5))),
    ("news", (("noise", 3), ("silence", 3), ("beep", 5), ("music", 9), ("silence", 2), ("beep", 3))),
)


@dataclass(frozen=True)
class DemoConfig:
    workdir: str
    clips_per_kind: int = 14
    clip_seconds: int = 5
    negatives: int = 6
    model: str = "baseline"
    epochs: int = 12
    batch_size: int = 16
    workers: int = 1
    seed: int = 0
    feature_preset: str = "64x64x1"
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)


@dataclass
class DemoResult:
    build: BuildReport
    caption: CaptionRun
    scores: dict
    vtt_files: list[str]


def make_corpus(root: str, cfg: DemoConfig) -> str:
    """Labelled clips of each kind (+ silent negatives and a few mixtures) and their manifest."""
    rows = []
    seed = cfg.seed * 10_000
    names = {m: Ontology.load().name(m) for m in KIND_LABELS.values()}
    plan = [(kind, cfg.clips_per_kind) for kind in KIND_LABELS] + [("silence", cfg.negatives), ("beep+music", max(2, cfg.clips_per_kind // 4))]
    for kind, count in plan:
        for i in range(count):
            seed += 1
            path = storage.join(root, "clips", f"{kind.replace('+', '-')}-{i:03d}.mp4")
            make_media(path, [(kind, cfg.clip_seconds)], seed=seed)
            labels = [names[KIND_LABELS[k]] for k in kind.split("+") if k in KIND_LABELS]
            rows.append((f"clips/{kind.replace('+', '-')}-{i:03d}.mp4", None, None, labels))
    # Transitions: clips made of two kinds, listed as two labelled segments of one file.
    kinds = list(KIND_LABELS)
    for i in range(len(kinds) * 2):
        seed += 1
        a, b = kinds[i % len(kinds)], kinds[(i + 1) % len(kinds)]
        path = storage.join(root, "clips", f"seq-{i:03d}.mp4")
        make_media(path, [(a, 3), (b, 3)], seed=seed)
        rows.append((f"clips/seq-{i:03d}.mp4", 0.0, 3.0, [names[KIND_LABELS[a]]]))
        rows.append((f"clips/seq-{i:03d}.mp4", 3.0, 6.0, [names[KIND_LABELS[b]]]))
    manifest = storage.join(root, "manifest.csv")
    write_manifest(rows, manifest)
    return manifest


def make_test_videos(root: str, seed: int = 12345) -> dict[str, list[list[str]]]:
    """The test library (plus one corrupt and one silent-video input) and its per-second truth."""
    truth = {}
    for index, (name, segments) in enumerate(TEST_VIDEOS):
        make_media(storage.join(root, name + ".mp4"), list(segments), seed=seed + index)
        truth[name] = [list(x) for x in per_second_truth(segments)]
    make_corrupt(storage.join(root, "broken", "corrupt.mp4"), seed=seed)
    make_media(storage.join(root, "broken", "no-audio.mp4"), [("beep", 2)], audio=False)
    storage.write_text(storage.join(root, "truth.json"), json.dumps(truth, indent=1))
    return truth


def vtt_activity(vtt_text: str, caption_to_label: dict[str, str], labels: list[str], n_seconds: int) -> np.ndarray:
    """Which labels a viewer sees captioned in each second: (n_seconds, L) bool."""
    active = np.zeros((n_seconds, len(labels)), dtype=bool)
    index = {m: j for j, m in enumerate(labels)}
    for cue in read_cues(vtt_text):
        text = " ".join(cue.lines)
        label = caption_to_label.get(text) or caption_to_label.get(base_caption(text))
        if label is None or label not in index:
            continue
        start_ms, end_ms = cue.start_ms, cue.end_ms
        for second in range(start_ms // 1000, min(n_seconds, -(-end_ms // 1000))):
            if second * 1000 >= start_ms and (second + 1) * 1000 <= end_ms:
                active[second, index[label]] = True
    return active


def score_captions(out: str, truth: dict[str, list[list[str]]], caption_text: dict[str, str], labels: list[str]) -> dict:
    """Per-second precision/recall/F1 of the written captions against the truth."""
    caption_to_label = {text: mid for mid, text in caption_text.items()}
    y_true, y_pred = [], []
    for name, seconds in truth.items():
        n = len(seconds)
        t = np.zeros((n, len(labels)), dtype=bool)
        for k, present in enumerate(seconds):
            for mid in present:
                t[k, labels.index(mid)] = True
        uri = storage.join(out, name + ".vtt")
        p = vtt_activity(storage.read_text(uri), caption_to_label, labels, n) if storage.exists(uri) else np.zeros_like(t)
        y_true.append(t)
        y_pred.append(p)
    result = segment_metrics(np.concatenate(y_true), np.concatenate(y_pred), labels)
    return result


def run_demo(cfg: DemoConfig, echo=print) -> DemoResult:
    """Run every stage in ``cfg.workdir`` on the current Ray cluster; print what happens."""
    work = storage.check_uri(cfg.workdir)
    feature_config = FeatureConfig.preset(cfg.feature_preset)
    echo(f"[1/5] making a labelled corpus in {storage.join(work, 'corpus')}")
    manifest = make_corpus(storage.join(work, "corpus"), cfg)
    requests, failures = read_manifest(manifest)
    echo(f"[2/5] building the dataset from {len(requests)} clips → {storage.join(work, 'dataset')}")
    report = build_dataset(
        requests, storage.join(work, "dataset"), BuildOptions(feature_config=feature_config, seed=cfg.seed, overwrite=True),
        source_failures=failures, sources=[manifest],
    )
    echo(f"      {report.n_clips} clips, {report.n_windows} one-second windows, {report.n_failed} failures {report.failure_reasons or ''}")
    echo(f"[3/5] training '{cfg.model}' for up to {cfg.epochs} epochs with Ray Train ({cfg.workers} worker(s))")
    run_dir = storage.join(work, "run")
    bundle = train(
        TrainConfig(
            data=storage.join(work, "dataset"), out=run_dir, model=cfg.model, epochs=cfg.epochs, batch_size=cfg.batch_size,
            workers=cfg.workers, seed=cfg.seed, patience=4, max_failures=0,
        ),
        name="demo",
    )
    echo(f"      best validation mAP {bundle.metrics.get('best_valid_map', float('nan')):.3f}; bundle {storage.join(run_dir, BUNDLE_NAME)}")
    echo(f"[4/5] making test videos with known per-second truth in {storage.join(work, 'videos')}")
    truth = make_test_videos(storage.join(work, "videos"), seed=cfg.seed + 777)
    echo(f"[5/5] captioning the library → {storage.join(work, 'captions')}")
    run = caption_library(
        [storage.join(work, "videos")],
        CaptionOptions(out=storage.join(work, "captions"), model=storage.join(run_dir, BUNDLE_NAME), force=True, postprocess=cfg.postprocess),
    )
    scores = score_captions(storage.join(work, "captions"), truth, bundle.caption_text, bundle.labels)
    storage.write_text(storage.join(work, "demo_scores.json"), json.dumps(scores, indent=1, default=float))
    vtts = [r.output_vtt for r in run.results if r.status == "captioned"]
    echo("")
    echo("per-second scores of the captions against the truth:")
    echo(f"  {'label':<24} {'precision':>9} {'recall':>7} {'F1':>6}")
    for mid in bundle.labels:
        row = scores["class_wise"][mid]
        echo(f"  {bundle.label_names[mid]:<24} {row['precision']:>9.3f} {row['recall']:>7.3f} {row['f_measure']:>6.3f}")
    overall = scores["overall"]
    echo(f"  {'overall (micro)':<24} {overall['precision']:>9.3f} {overall['recall']:>7.3f} {overall['f_measure']:>6.3f}")
    echo("")
    for r in run.results:
        echo(f"  {r.status:<9} {r.input}" + (f"  ({r.reason}: {r.message[:80]})" if r.status == "failed" else f"  → {r.output_vtt}"))
    echo(f"run report: {run.report_uri}")
    return DemoResult(build=report, caption=run, scores=scores, vtt_files=vtts)
