"""Whole training runs (``sound_captions.train.train``: Ray Train start-up, epochs, checkpoints,
thresholds, bundle) with Ray Train's default controller poll interval (2 s) against the
interval ``train`` sets (``POLL_INTERVAL_S``), same dataset, same run.

Ray Train V2's controller polls its workers every ``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S``, and a
worker's ``ray.train.report()`` waits for the poll that collects the report before it: an
epoch shorter than the interval waits out the rest. The figure that matters is therefore the
wall time per epoch when epochs are short (a small dataset, a fine-tune, a fold of
``dataset clean``) and when they are not (the default model on the default features).

    python bench/bench_train_run.py                          # baseline and compact, 6 epochs
    python bench/bench_train_run.py --models compact --features 64x64x1 --epochs 12

Dataset: the demo's generated corpus (``sound_captions.demo.make_corpus``: ``--clips`` clips of
4 s per kind, silent negatives, two-kind mixtures and transitions), split 75/10/15 by clip;
``ray.init(num_cpus=4)`` as the tests do on this 2-core machine; one worker.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def build(root: Path, clips: int, features: str) -> Path:
    """The demo's generated corpus (``clips`` per kind, silent negatives, mixtures) as a dataset."""
    from sound_captions.dataset.build import BuildOptions, build_dataset
    from sound_captions.demo import DemoConfig, make_corpus
    from sound_captions.features import FeatureConfig
    from sound_captions.sources.manifest import read_manifest

    manifest = make_corpus(str(root / "corpus"), DemoConfig(workdir=str(root), clips_per_kind=clips, clip_seconds=4))
    requests, failures = read_manifest(manifest)
    options = BuildOptions(feature_config=FeatureConfig.preset(features), split_fractions=(0.75, 0.1, 0.15), seed=3)
    build_dataset(requests, str(root / "dataset"), options, source_failures=failures)
    return root / "dataset"


def timed_run(data: Path, out: Path, model: str, epochs: int, poll_s: str | None) -> dict:
    from sound_captions.train import TrainConfig, train
    from sound_captions.train.run import POLL_ENV

    os.environ.pop(POLL_ENV, None)
    if poll_s is not None:  # a value the user set: train() keeps it
        os.environ[POLL_ENV] = poll_s
    started = time.perf_counter()
    bundle = train(TrainConfig(data=str(data), out=str(out), model=model, epochs=epochs, batch_size=8, seed=2, patience=0))
    wall_s = time.perf_counter() - started
    os.environ.pop(POLL_ENV, None)
    history = bundle.metrics["history"]
    return {
        "wall_s": round(wall_s, 2),
        "epochs": len(history),
        "loop_s_per_epoch": round(sum(m["epoch_s"] for m in history) / max(len(history), 1), 3),
        "best_valid_map": bundle.metrics["best_valid_map"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="baseline,compact")
    parser.add_argument("--features", default="128x128x1", help="a FeatureConfig preset")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--clips", type=int, default=20, help="clips per kind")
    parser.add_argument("--num-cpus", type=int, default=4, help="logical CPUs of the local Ray")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    import ray

    from sound_captions.train.run import POLL_INTERVAL_S

    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    results = {"features": args.features, "epochs": args.epochs, "clips_per_kind": args.clips, "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        data = build(Path(tmp), args.clips, args.features)
        for model in args.models.split(","):
            ray_default = timed_run(data, Path(tmp) / f"{model}-2s", model, args.epochs, "2.0")
            ours = timed_run(data, Path(tmp) / f"{model}-ours", model, args.epochs, None)
            results["models"][model] = {"ray_default_2s": ray_default, f"train_{POLL_INTERVAL_S}s": ours}
            print(
                f"{model:>9} {args.features} {args.epochs} epochs: Ray's 2 s poll {ray_default['wall_s']:.1f} s, "
                f"train's {POLL_INTERVAL_S} s poll {ours['wall_s']:.1f} s "
                f"({ray_default['wall_s'] / ours['wall_s']:.2f}x; training loop {ours['loop_s_per_epoch']:.2f} s/epoch; "
                f"valid mAP {ray_default['best_valid_map']:.3f} vs {ours['best_valid_map']:.3f})",
                flush=True,
            )
    ray.shutdown()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
