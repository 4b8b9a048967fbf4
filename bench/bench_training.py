"""Training throughput: the real data path (Ray Data over Parquet shards) against tensors in memory.

One process, one run: writes a dataset of generated windows (random log-mel-like float16 images,
three labels) with ``sound_captions.dataset.shards``, then measures

1. data only: samples/s of one pass over the training split, and the time to the first batch;
2. a model step (forward, BCE loss, backward, AdamW) fed from
   a. ``read_split(..., in_memory=False)``: streaming from the shards (the real path),
   b. ``read_split(..., in_memory=True)``: materialised in the object store first,
   c. a torch tensor already in memory (the ceiling: no data path at all),

with the same batch size, local shuffle buffer and conversion (``to_model_input``) as the train
loop. It prints samples/s of each and the ratios to (c). On a CPU the model step dominates; on a
GPU the ratios say whether the data path keeps the accelerator fed.

Resources: ``ray.init(num_cpus=2)``: the read and ``map_batches`` tasks take one logical CPU
each; the model step runs in this process with ``--threads`` torch threads.

    python bench/bench_training.py                 # 2000 windows, baseline CNN, 8 timed steps
    python bench/bench_training.py --smoke-test    # 256 windows, compact CNN, 2 timed steps
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from sound_captions.dataset import shards
from sound_captions.features import FeatureConfig, to_model_input

LABELS = {"/m/04rlf": "Music", "/m/02fs_r": "Beep, bleep", "/m/0chx_": "White noise"}


def write_dataset(root: Path, windows: int, rows_per_shard: int, seed: int) -> shards.DatasetInfo:
    """``windows`` generated rows (all in the train split) in shards of ``rows_per_shard``."""
    cfg = FeatureConfig()
    rng = np.random.default_rng(seed)
    mids = list(LABELS)
    rel_paths = []
    label_windows = dict.fromkeys(mids, 0)
    for first in range(0, windows, rows_per_shard):
        n = min(rows_per_shard, windows - first)
        spec = rng.standard_normal((n, *cfg.shape), dtype=np.float32).astype(np.float16)
        labels = [[mids[int(k)]] for k in rng.integers(0, len(mids), n)]
        for (mid,) in labels:
            label_windows[mid] += 1
        table = shards.shard_table(
            {
                "clip_id": [f"clip{(first + i) // 10}" for i in range(n)],
                "source": ["generated"] * n,
                "second": [(first + i) % 10 for i in range(n)],
                "start_s": [float((first + i) % 10) for i in range(n)],
                "labels": labels,
                "split": ["train"] * n,
                "spectrogram": spec,
            },
            cfg,
        )
        rel = f"{shards.SHARD_DIR}/part-{first // rows_per_shard:05d}.parquet"
        shards.write_table(table, str(root / rel))
        rel_paths.append(rel)
    info = shards.DatasetInfo(
        feature_config=cfg,
        vocabulary=dict(LABELS),
        shards=rel_paths,
        counts={
            "train": {
                "clips": windows // 10,
                "windows": windows,
                "labels": {m: {"clips": 0, "windows": label_windows[m]} for m in mids},
            }
        },
    )
    shards.write_dataset_info(str(root), info)
    return info


class Stepper:
    """One optimisation step of ``model`` on a batch of stored (N, H, W, C) spectrograms."""

    def __init__(
        self, model_name: str, n_labels: int, input_shape, device: torch.device, seed: int
    ):
        from sound_captions.models import build_model

        torch.manual_seed(seed)
        self.device = device
        self.model = build_model(model_name, n_labels, input_shape).to(device).train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
        self.loss_fn = torch.nn.BCEWithLogitsLoss()

    def __call__(self, x, y) -> None:
        x = to_model_input(x).to(self.device, non_blocking=True)
        y = torch.as_tensor(y).to(self.device, non_blocking=True)
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.model(x).float(), y)
        loss.backward()
        self.optimizer.step()

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()


def ray_batches(ds, batch_size: int, seed: int):
    """Batches exactly as the train loop draws them."""
    for batch in ds.iter_torch_batches(
        batch_size=batch_size,
        drop_last=True,
        local_shuffle_buffer_size=max(batch_size * 8, 256),
        local_shuffle_seed=seed,
    ):
        yield batch["x"], batch["y"]


def tensor_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int):
    """Shuffled batches sliced from tensors in memory (no data path)."""
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    for first in range(0, len(x) - batch_size + 1, batch_size):
        index = order[first : first + batch_size]
        yield x[index], y[index]


def data_only(make_batches) -> dict:
    """One pass without a model: samples/s and seconds to the first batch."""
    start = time.perf_counter()
    first_batch_s, samples, last_first = None, 0, 0
    for x, _ in make_batches():
        if first_batch_s is None:
            first_batch_s = time.perf_counter() - start
            last_first = len(x)
        samples += len(x)
    elapsed = time.perf_counter() - start
    # After the first batch: the pipeline's rate once it runs (start-up is paid once per epoch).
    steady = (
        (samples - last_first) / max(elapsed - first_batch_s, 1e-9)
        if samples > last_first
        else float("nan")
    )
    return {
        "samples": samples,
        "samples_per_s": samples / elapsed,
        "first_batch_s": first_batch_s,
        "steady_samples_per_s": steady,
    }


def with_model(make_batches, step: Stepper, warmup: int, steps: int) -> dict:
    """Samples/s over ``steps`` steps after ``warmup`` steps (pipeline start-up and the first,
    slower model steps fall into the warm-up)."""
    batches = make_batches()
    for _ in range(warmup):
        step(*next(batches))
    step.sync()
    start = time.perf_counter()
    samples = 0
    for _ in range(steps):
        x, y = next(batches)
        step(x, y)
        samples += len(x)
    step.sync()
    elapsed = time.perf_counter() - start
    return {"samples": samples, "samples_per_s": samples / elapsed}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--windows", type=int, default=2000)
    parser.add_argument("--rows-per-shard", type=int, default=500)
    parser.add_argument("--model", default="baseline")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=2, help="untimed model steps per mode")
    parser.add_argument("--steps", type=int, default=8, help="timed model steps per mode")
    parser.add_argument(
        "--repeats", type=int, default=1, help="model measurements per mode (median)"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the model step")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--num-cpus", type=int, default=2, help="logical CPUs of the local Ray")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--smoke-test", action="store_true", help="256 windows, compact, 2 steps")
    args = parser.parse_args(argv)
    if args.smoke_test:
        args.windows, args.rows_per_shard, args.model, args.steps, args.warmup = (
            256,
            128,
            "compact",
            2,
            1,
        )
    needed = (args.warmup + args.steps) * args.batch_size
    if needed > args.windows:
        parser.error(f"--windows {args.windows} < (warmup + steps) × batch size = {needed}")

    import ray

    from sound_captions.train.data import label_matrix, read_split

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    results: dict = {"config": {k: v for k, v in vars(args).items() if k != "json"}}
    try:
        with tempfile.TemporaryDirectory(prefix="sc-bench-train-") as tmp:
            root = Path(tmp)
            start = time.perf_counter()
            info = write_dataset(root, args.windows, args.rows_per_shard, seed=0)
            results["write_dataset_s"] = time.perf_counter() - start
            h, w, c = info.feature_config.shape

            streaming = read_split(str(root), info, "train", in_memory=False)
            start = time.perf_counter()
            in_memory = read_split(str(root), info, "train", in_memory=True)
            results["materialize_s"] = time.perf_counter() - start
            tables = [shards.read_table(str(root / rel)) for rel in info.shards]
            x_all = torch.from_numpy(np.concatenate([shards.spectrograms(t) for t in tables]))
            y_all = torch.from_numpy(
                label_matrix(
                    [row for t in tables for row in t.column("labels").to_pylist()], info.labels
                )
            )
            if device.type == "cuda":  # the ceiling: data already on the accelerator
                x_all, y_all = x_all.to(device), y_all.to(device)

            bs = args.batch_size
            modes = {
                "streaming": lambda: ray_batches(streaming, bs, seed=1),
                "in_memory": lambda: ray_batches(in_memory, bs, seed=1),
                "tensor": lambda: tensor_batches(x_all, y_all, bs, seed=1),
            }
            results["data_only"] = {name: data_only(make) for name, make in modes.items()}
            step = Stepper(args.model, len(info.labels), (c, h, w), device, seed=0)
            results["model_step"] = {}
            for name, make in modes.items():
                runs = [
                    with_model(make, step, args.warmup, args.steps) for _ in range(args.repeats)
                ]
                results["model_step"][name] = {
                    "samples_per_s": statistics.median(r["samples_per_s"] for r in runs),
                    "runs": [r["samples_per_s"] for r in runs],
                }
    finally:
        ray.shutdown()

    for part in ("data_only", "model_step"):
        base = results[part]["tensor"]["samples_per_s"]
        for name in ("streaming", "in_memory"):
            results[part][name]["ratio_to_tensor"] = results[part][name]["samples_per_s"] / base
    print(f"{args.windows} windows {h}x{w}x{c}, model {args.model} on {device}, batch {bs}")
    print(
        f"dataset written in {results['write_dataset_s']:.1f} s, materialised in {results['materialize_s']:.1f} s"
    )
    print(
        f"{'path':<10} {'data samples/s':>15} {'after 1st batch':>16} {'1st batch s':>12}"
        f" {'model samples/s':>16} {'ratio':>6}"
    )
    for name in ("streaming", "in_memory", "tensor"):
        d, m = results["data_only"][name], results["model_step"][name]
        print(
            f"{name:<10} {d['samples_per_s']:>15.0f} {d['steady_samples_per_s']:>16.0f} {d['first_batch_s']:>12.2f}"
            f" {m['samples_per_s']:>16.1f} {m.get('ratio_to_tensor', 1.0):>6.2f}"
        )
    print("ratio: model samples/s of the path / model samples/s fed from the in-memory tensor")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
