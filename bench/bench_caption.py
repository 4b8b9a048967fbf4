"""Throughput of the caption job: hours of video captioned per wall-hour, for the whole pipeline
and, in the same run on the same files, for ffmpeg decoding their audio alone (the floor no
captioner can beat, since every captioner has to decode the audio first).

    python bench/bench_caption.py                   # 6 generated videos x 10 min
    python bench/bench_caption.py --videos 12 --minutes 5 --model run/model.bundle
    python bench/bench_caption.py --smoke-test      # 2 x 30 s, for CI

Resource arithmetic: a local Ray cluster of max(4, cores) logical CPUs; decode and feature
tasks take 1 CPU each and the one inference actor the rest (2 of 4; its torch threads too), so
decode, features and inference of different videos overlap while the OS shares the cores. The
job runs ``--repeats`` times, each on a fresh Ray session, and the median wall time is quoted
(single runs of the same code on this machine ranged from 14 to 23 s).
The decode-only floor runs ``cores`` ffmpeg processes at once (the same hardware).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import tempfile
import time
from pathlib import Path


def decode_only(paths: list[Path], workers: int) -> float:
    """Wall seconds for ffmpeg to decode every file's audio to 16 kHz mono float32 (discarded)."""
    from sound_captions.audio import stream_audio

    def drain(path: Path) -> int:
        return sum(chunk.size for chunk in stream_audio(path, chunk_s=60))

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(drain, paths))
    return time.perf_counter() - started


def model_only(model: str, threads: int, batch: int = 256, repeats: int = 3) -> dict[str, float]:
    """Windows/s of the model alone, on random spectrograms: plain eager NCHW (what the job did
    before), the caption job's inference actor running the batch in one pass (channels-last,
    fused), and the actor as the job runs it (passes of ``cpu_forward_batch`` windows on CPU)."""
    import numpy as np
    import torch

    from sound_captions.bundle import load_bundle
    from sound_captions.caption.stages import Classifier
    from sound_captions.context import per_second_outputs
    from sound_captions.features import to_model_input

    bundle = load_bundle(model)
    h, w, c = bundle.feature_config.shape
    spec = np.random.default_rng(0).standard_normal((batch, h, w, c)).astype(np.float16)
    actor = Classifier(model, threads=threads)  # pins torch to ``threads``
    one_pass = Classifier(model, threads=threads, cpu_forward_batch=batch)
    net = bundle.build_model()

    def eager():
        with torch.inference_mode():
            per_second_outputs(net, to_model_input(spec), bundle.context)

    def through(classifier):
        return lambda: classifier({"spectrogram": spec.copy(), "kind": np.full(batch, "window", dtype=object)})

    out = {}
    for name, run in (("eager_nchw", eager), ("caption_actor_one_pass", through(one_pass)), ("caption_actor", through(actor))):
        run()
        t0 = time.perf_counter()
        for _ in range(repeats):
            run()
        out[name] = round(batch * repeats / (time.perf_counter() - t0), 1)
    return out


def stage_profile(paths: list[Path], model: str, out: Path) -> dict[str, float]:
    """Seconds per hour of media of each stage, run one after another in this process on one
    thread (the caption job overlaps them across Ray tasks; this shows which one bounds it):
    discover, decode, features, inference, post-processing, writing."""
    import numpy as np
    import torch

    from sound_captions.audio import stream_audio
    from sound_captions.bundle import load_bundle
    from sound_captions.caption.fetch import FetchOptions, fetched
    from sound_captions.caption.inputs import discover
    from sound_captions.caption.outputs import settings_digest, write_outputs
    from sound_captions.caption.postprocess import PostprocessConfig, scores_to_cues
    from sound_captions.caption.stages import Classifier, SecondScorer, window_level_dbfs
    from sound_captions.features import frame_windows, spectrograms_where

    torch.set_num_threads(1)
    bundle = load_bundle(model)
    classifier = Classifier(model, threads=1)
    scorer = SecondScorer(bundle)
    t = dict.fromkeys(("discover", "decode", "features", "inference", "post-processing", "writing"), 0.0)
    t0 = time.perf_counter()
    items, _ = discover([str(paths[0].parent)])
    t["discover"] += time.perf_counter() - t0
    media_s = 0
    for item in items:
        t0 = time.perf_counter()
        with fetched(item.uri, FetchOptions()) as source:
            audio = np.concatenate(list(stream_audio(source, chunk_s=60)))
        t["decode"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        windows = frame_windows(audio, bundle.feature_config)
        spec = np.concatenate([spectrograms_where(w, np.ones(len(w), bool), bundle.feature_config) for w in np.array_split(windows, max(1, len(windows) // 256))])
        level = window_level_dbfs(windows)
        t["features"] += time.perf_counter() - t0
        media_s += len(windows)
        t0 = time.perf_counter()
        parts = []
        for start in range(0, len(spec), 256):  # the job's own inference actor, called in-process
            batch = classifier({"spectrogram": spec[start : start + 256], "kind": np.full(len(spec[start : start + 256]), "window", dtype=object)})
            parts.append(batch["embedding" if bundle.context else "scores"])
        scores = scorer(np.concatenate(parts), level)
        t["inference"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        cues, _ = scores_to_cues(scores, bundle.labels, bundle.thresholds, bundle.caption_text, PostprocessConfig())
        t["post-processing"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        write_outputs(str(out), item, scores, cues, bundle, bundle.digest(), settings_digest(bundle.digest(), bundle.caption_text, PostprocessConfig()))
        t["writing"] += time.perf_counter() - t0
    return {k: round(v / (media_s / 3600), 2) for k, v in t.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--minutes", type=float, default=10.0, help="Per video (short videos measure start-up, not throughput).")
    parser.add_argument(
        "--model", default=None,
        help="A model bundle to measure (default: a bundle of what `dataset build` + `train` make by default (architecture and features) and one of the study's baseline on its 128x128 features, trained briefly on generated media: speed does not depend on quality).",
    )
    parser.add_argument("--repeats", type=int, default=3, help="Runs of the job per model (fresh Ray each); the median is quoted.")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--smoke-test", action="store_true", help="2 videos x 30 s.")
    parser.add_argument("--json", default=None, help="Also write the figures to this file.")
    args = parser.parse_args()
    if args.smoke_test:
        args.videos, args.minutes, args.repeats = 2, 0.5, 1

    import numpy as np
    import ray

    from sound_captions.caption.pipeline import CaptionOptions, caption_library
    from sound_captions.testing.bundles import train_tiny_bundle
    from sound_captions.testing.media import make_media

    work = Path(args.workdir or tempfile.mkdtemp(prefix="sc-bench-"))
    seconds = int(args.minutes * 60)
    pattern = [("beep", 10), ("music", 10), ("silence", 5), ("noise", 10), ("music+beep", 5)]
    paths = []
    for i in range(args.videos):
        segments = (pattern * (seconds // 40 + 1))
        total, cut = 0, []
        for kind, s in segments:
            if total >= seconds:
                break
            cut.append((kind, min(s, seconds - total)))
            total += cut[-1][1]
        paths.append(make_media(work / "videos" / f"video-{i:02d}.mp4", cut, seed=i))
    if args.model:
        models = {"given": args.model}
    else:
        from sound_captions.features import FeatureConfig
        from sound_captions.train import TrainConfig

        # what `dataset build` + `train` make by default, and the study's baseline on its features
        models = {}
        for role, architecture, cfg in (("default", TrainConfig.model, FeatureConfig()), ("study baseline", "baseline", FeatureConfig.preset("128x128x1"))):
            shape = "x".join(map(str, cfg.shape))
            name = f"default ({architecture}, {shape})" if role == "default" else f"{role} ({shape})"
            models[name] = str(work / f"{architecture}-{shape}.bundle")
            train_tiny_bundle(models[name], 0, epochs=1, architecture=architecture, cfg=cfg)
    cores = os.cpu_count() or 1
    media_h = args.videos * seconds / 3600

    decode_s = decode_only(paths, cores)
    figures = {
        "videos": args.videos, "media_hours": round(media_h, 4), "cores": cores,
        "decode_only_wall_s": round(decode_s, 2), "decode_only_h_per_wall_h": round(media_h / (decode_s / 3600), 1), "models": {},
    }
    print(f"{args.videos} videos, {media_h:.2f} h of media on {cores} cores")
    print(f"  ffmpeg decode only ({cores} at once) : {figures['decode_only_h_per_wall_h']:8.1f} h of media per wall-hour ({decode_s:.1f} s)")
    for name, model in models.items():
        walls = []
        slug = "".join(c if c.isalnum() else "-" for c in name)
        for _ in range(max(1, args.repeats)):
            ray.init(num_cpus=max(4, cores), include_dashboard=False, log_to_driver=False)
            ray.data.DataContext.get_current().enable_progress_bars = False
            try:
                run = caption_library([str(work / "videos")], CaptionOptions(out=str(work / f"captions-{slug}"), model=model, force=True))
            finally:
                ray.shutdown()
            assert not run.failed, [(r.input, r.reason, r.message) for r in run.failed]
            walls.append(run.wall_s)
        wall_s = float(np.median(walls))
        per_h = media_h / (wall_s / 3600)
        stages = stage_profile(paths, model, work / f"profile-{slug}")
        alone = model_only(model, cores)
        figures["models"][name] = {
            "bundle": model, "pipeline_wall_s": round(wall_s, 2), "pipeline_runs_wall_s": [round(w, 2) for w in walls], "pipeline_h_per_wall_h": round(per_h, 1),
            "pipeline_to_floor_ratio": round(per_h / figures["decode_only_h_per_wall_h"], 3),
            "stage_s_per_media_h_one_thread": stages,
            "model_only_windows_per_s": alone,
        }
        print(f"  caption job, {name:<28}: {per_h:8.1f} h of media per wall-hour (median of {len(walls)}: {wall_s:.1f} s), ratio to the floor {per_h / figures['decode_only_h_per_wall_h']:.3f}")
        print("      one thread, seconds per hour of media: " + ", ".join(f"{k} {v:.1f}" for k, v in stages.items()))
        print(
            f"      model alone, {cores} threads, batch 256: eager NCHW {alone['eager_nchw']:.0f} windows/s, "
            f"the job's actor in one pass {alone['caption_actor_one_pass']:.0f} ({alone['caption_actor_one_pass'] / alone['eager_nchw']:.2f}×), "
            f"as the job runs it {alone['caption_actor']:.0f} ({alone['caption_actor'] / alone['eager_nchw']:.2f}×)"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
