"""Throughput of the caption job: hours of video captioned per wall-hour, for the whole pipeline
and, in the same run on the same files, for ffmpeg decoding their audio alone (the floor no
captioner can beat, since every captioner has to decode the audio first).

    python bench/bench_caption.py                   # 6 generated videos x 10 min
    python bench/bench_caption.py --videos 12 --minutes 5 --model run/model.bundle
    python bench/bench_caption.py --smoke-test      # 2 x 30 s, for CI

Resource arithmetic: a local Ray cluster of max(4, cores) logical CPUs; decode and feature
tasks take 1 CPU each and the one inference actor 1 CPU, so with 4 logical CPUs on 2 cores
decode, features and inference of different videos overlap while the OS shares the cores.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--minutes", type=float, default=10.0, help="Per video (short videos measure start-up, not throughput).")
    parser.add_argument("--model", default=None, help="Model bundle (default: a tiny one trained on generated media).")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--smoke-test", action="store_true", help="2 videos x 30 s.")
    parser.add_argument("--json", default=None, help="Also write the figures to this file.")
    args = parser.parse_args()
    if args.smoke_test:
        args.videos, args.minutes = 2, 0.5

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
    model = args.model
    if model is None:
        model = str(work / "tiny.bundle")
        train_tiny_bundle(model, 0)
    cores = os.cpu_count() or 1
    media_h = args.videos * seconds / 3600

    decode_s = decode_only(paths, cores)
    ray.init(num_cpus=max(4, cores), include_dashboard=False, log_to_driver=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    try:
        run = caption_library([str(work / "videos")], CaptionOptions(out=str(work / "captions"), model=model, force=True))
    finally:
        ray.shutdown()
    assert not run.failed, [(r.input, r.reason, r.message) for r in run.failed]
    figures = {
        "videos": args.videos,
        "media_hours": round(media_h, 4),
        "cores": cores,
        "decode_only_wall_s": round(decode_s, 2),
        "pipeline_wall_s": round(run.wall_s, 2),
        "decode_only_h_per_wall_h": round(media_h / (decode_s / 3600), 1),
        "pipeline_h_per_wall_h": round(media_h / (run.wall_s / 3600), 1),
    }
    figures["pipeline_to_floor_ratio"] = round(figures["pipeline_h_per_wall_h"] / figures["decode_only_h_per_wall_h"], 3)
    print(
        f"{args.videos} videos, {media_h:.2f} h of media on {cores} cores\n"
        f"  ffmpeg decode only : {figures['decode_only_h_per_wall_h']:8.1f} h of media per wall-hour ({decode_s:.1f} s)\n"
        f"  whole caption job  : {figures['pipeline_h_per_wall_h']:8.1f} h of media per wall-hour ({run.wall_s:.1f} s)\n"
        f"  ratio job / floor  : {figures['pipeline_to_floor_ratio']:.3f}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
