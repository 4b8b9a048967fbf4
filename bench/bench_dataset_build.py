"""Dataset-build benchmark: clips per second of the Ray Data pipeline and, in the same run on the
same inputs, of a plain sequential loop doing the same work (download_segment → decode_windows →
add_spectrograms → shard write).

Media are generated locally and served by the loopback ``MediaServer`` (Range requests honoured),
so the downloads are real yt-dlp + ffmpeg runs; nothing leaves the machine.

    PYTHONPATH=. python bench/bench_dataset_build.py --clips 24 --seconds 4 --num-cpus 4

Resource arithmetic of the default run: 4 logical CPUs (on however many cores the machine has):
one fetch actor (0.25 CPU) running ``--concurrency`` downloads on threads, decode+features tasks
at 1 CPU each, the writer at 0.25 CPU. The sequential loop uses one process.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def make_corpus(folder: Path, n: int, seconds: int) -> list:
    from sound_captions.sources.requests import ClipRequest
    from sound_captions.testing.media import KIND_LABELS, make_media

    kinds = ["beep", "music", "noise"]
    requests = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        make_media(folder / f"bench{i:03d}.mp4", [(kind, seconds)], seed=i)
        requests.append(ClipRequest(f"bench{i:03d}_0", f"yt:bench{i:03d}", 0.0, float(seconds), (KIND_LABELS[kind],), "bench"))
    return requests


def run_ray(requests, server, work: Path, num_cpus: int, concurrency: int) -> tuple[float, int]:
    import ray

    from sound_captions.dataset.build import BuildOptions, build_dataset
    from sound_captions.download import DownloadOptions

    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    try:
        download = DownloadOptions(scratch_dir=str(work / "ray-scratch"), source_url_template=server.url_template)
        started = time.perf_counter()
        report = build_dataset(requests, str(work / "ray-out"), BuildOptions(fetch_concurrency=concurrency), download=download)
        elapsed = time.perf_counter() - started
    finally:
        ray.shutdown()
    return elapsed, report.n_windows


def run_sequential(requests, server, work: Path) -> tuple[float, int]:
    import numpy as np

    from sound_captions.dataset import shards
    from sound_captions.dataset.stages import (
        add_spectrograms,
        concat_batches,
        decode_windows,
        join_labels,
    )
    from sound_captions.download import DownloadOptions, download_segment
    from sound_captions.features import FeatureConfig

    cfg = FeatureConfig()
    options = DownloadOptions(scratch_dir=str(work / "seq-scratch"), source_url_template=server.url_template)
    started = time.perf_counter()
    batches = []
    for r in requests:
        outcome = download_segment(r, options)
        if not outcome.ok:
            continue
        row = {"clip_id": r.clip_id, "source": r.source, "start_s": r.start_s, "end_s": r.end_s, "labels": join_labels(r.labels), "split": "train"}
        batch = add_spectrograms(decode_windows(row, cfg, media=outcome.path, offset_s=0.0), cfg)
        batches.append({k: v[np.asarray(batch["reason"]) == ""] for k, v in batch.items()})
    rows = concat_batches(batches)
    rows["labels"] = [[x for x in s.split("|") if x] for s in rows["labels"]]
    table = shards.shard_table(rows, cfg)
    shards.write_table(table, str(work / "seq-out" / "part-0.parquet"))
    return time.perf_counter() - started, table.num_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--num-cpus", type=int, default=4, help="logical CPUs of the local Ray cluster")
    parser.add_argument("--concurrency", type=int, default=4, help="downloads at once in the fetch actor")
    parser.add_argument("--smoke-test", action="store_true", help="6 clips of 2 s")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()
    if args.smoke_test:
        args.clips, args.seconds = 6, 2

    from sound_captions.testing.http_server import MediaServer

    with tempfile.TemporaryDirectory(prefix="bench-dataset-") as tmp:
        work = Path(tmp)
        (work / "media").mkdir()
        requests = make_corpus(work / "media", args.clips, args.seconds)
        with MediaServer(work / "media", retry_after_s=0) as server:
            seq_s, seq_windows = run_sequential(requests, server, work)
            ray_s, ray_windows = run_ray(requests, server, work, args.num_cpus, args.concurrency)
    if seq_windows != ray_windows:
        raise SystemExit(f"the two runs disagree: {seq_windows} windows sequentially, {ray_windows} with Ray")
    figures = {
        "clips": args.clips, "seconds_per_clip": args.seconds, "windows": ray_windows, "cores": os.cpu_count(),
        "ray_num_cpus": args.num_cpus, "sequential_s": round(seq_s, 2), "ray_s": round(ray_s, 2),
        "sequential_clips_per_s": round(args.clips / seq_s, 3), "ray_clips_per_s": round(args.clips / ray_s, 3),
        "ratio_ray_over_sequential": round(seq_s / ray_s, 2),
    }  # fmt: skip
    print(
        f"{args.clips} clips × {args.seconds} s ({ray_windows} windows) on {os.cpu_count()} cores:\n"
        f"  sequential loop: {figures['sequential_clips_per_s']:.2f} clips/s ({seq_s:.1f} s)\n"
        f"  Ray pipeline:    {figures['ray_clips_per_s']:.2f} clips/s ({ray_s:.1f} s, excluding Ray start-up)\n"
        f"  ratio Ray / sequential: {figures['ratio_ray_over_sequential']:.2f}×"
    )
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
