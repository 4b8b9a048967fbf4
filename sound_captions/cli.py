"""``sound-captions``: the command line. Thin: parse options, start Ray, call the library."""

from __future__ import annotations

import json
import logging
import os
import sys

import click

from sound_captions import __version__


def init_ray(num_cpus: int | None = None, address: str | None = None) -> None:
    """Join the Ray cluster named by ``--ray-address``/``RAY_ADDRESS``, else start a local one.

    Locally, at least 4 logical CPUs are declared (even on 2 cores) so that the pipeline's
    stages and actor pools all get slots; the OS shares the real cores among them.
    """
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_ACCEPT_CLUSTER_CONFIG_WITHOUT_AUTH", "1")
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
        return
    ray.init(num_cpus=num_cpus or max(4, os.cpu_count() or 1), include_dashboard=False, log_to_driver=False)


def _quiet_ray_data() -> None:
    import ray

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = sys.stderr.isatty()
    ctx.print_on_execution_start = False


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sound-captions")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("--ray-address", envvar="RAY_ADDRESS", default=None, help="Ray cluster to join (default: a local one).")
@click.option("--num-cpus", type=int, default=None, help="Logical CPUs of a local Ray cluster (default: max(4, cores)).")
@click.pass_context
def main(ctx: click.Context, verbose: int, ray_address: str | None, num_cpus: int | None) -> None:
    """Sound captions ([dog barking], [applause]) as WebVTT for whole video libraries."""
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)], format="%(levelname)s %(name)s: %(message)s")
    ctx.obj = {"ray_address": ray_address, "num_cpus": num_cpus}


def _start_ray(ctx: click.Context) -> None:
    init_ray(ctx.obj.get("num_cpus"), ctx.obj.get("ray_address"))
    _quiet_ray_data()


# ------------------------------------------------------------------------------------------ demo


@main.command()
@click.option("--workdir", default="demo-work", show_default=True, help="Where the corpus, dataset, model and captions go.")
@click.option("--model", default="baseline", show_default=True, help="Architecture to train.")
@click.option("--epochs", default=8, show_default=True)
@click.option("--workers", default=1, show_default=True, help="Ray Train workers.")
@click.option("--clips-per-kind", default=14, show_default=True)
@click.option("--min-f1", type=float, default=None, help="Exit non-zero when the overall per-second F1 is below this.")
@click.pass_context
def demo(ctx, workdir, model, epochs, workers, clips_per_kind, min_f1):
    """Make a labelled corpus and test videos, then build, train, caption and score them."""
    from sound_captions.demo import DemoConfig, run_demo

    _start_ray(ctx)
    result = run_demo(DemoConfig(workdir=workdir, model=model, epochs=epochs, workers=workers, clips_per_kind=clips_per_kind), echo=click.echo)
    f1 = result.scores["overall"]["f_measure"]
    click.echo(f"overall per-second F1: {f1:.3f}")
    if min_f1 is not None and not f1 >= min_f1:
        raise SystemExit(1)


# --------------------------------------------------------------------------------------- dataset


@main.group()
def dataset():
    """Build and inspect training datasets (Parquet shards)."""


@dataset.command("build")
@click.option("--manifest", "manifests", multiple=True, required=True, help="Manifest CSV (source,start_s,end_s,labels); repeatable.")
@click.option("--out", required=True, help="Dataset folder: local path or s3:// URI.")
@click.option("--features", "feature_preset", default="128x128x1", show_default=True, help="128x128x1, 256x256x3, linear-128x128x1, ...")
@click.option("--split", "split_fractions", default="0.8,0.1,0.1", show_default=True, help="train,valid,test fractions (by clip).")
@click.option("--seed", default=0, show_default=True)
@click.option("--shard-mb", default=128, show_default=True, help="Target shard size.")
@click.option("--overwrite", is_flag=True, help="Replace a finished dataset at --out.")
@click.pass_context
def dataset_build(ctx, manifests, out, feature_preset, split_fractions, seed, shard_mb, overwrite):
    """Decode labelled clips, cut 1-s windows, compute spectrograms, write shards."""
    from sound_captions.dataset.build import BuildOptions, build_dataset
    from sound_captions.features import FeatureConfig
    from sound_captions.sources.manifest import read_manifest

    requests, failures = [], []
    for manifest in manifests:
        r, f = read_manifest(manifest)
        requests += r
        failures += f
    fractions = tuple(float(x) for x in split_fractions.split(","))
    _start_ray(ctx)
    report = build_dataset(
        requests,
        out,
        BuildOptions(feature_config=FeatureConfig.preset(feature_preset), split_fractions=fractions, seed=seed, target_shard_mb=shard_mb, overwrite=overwrite),
        source_failures=failures,
        sources=list(manifests),
    )
    click.echo(f"{report.n_clips} clips → {report.n_windows} windows in {len(report.info.shards)} shard(s) at {report.root}")
    click.echo(f"{report.n_failed} of {report.n_requested} items failed" + (f": {report.failure_reasons}" if report.failure_reasons else ""))


@dataset.command("stats")
@click.argument("uri")
def dataset_stats(uri):
    """Counts per label and split, coverage, failure reasons."""
    from collections import Counter

    from sound_captions.dataset.shards import load_dataset_info, read_failures

    info = load_dataset_info(uri)
    failures = read_failures(uri)
    click.echo(f"dataset {uri}  features {info.feature_config.shape} {info.feature_config.kind} ({info.feature_config.hash})  shards {len(info.shards)}")
    click.echo(f"{'label':<32} {'train':>7} {'valid':>7} {'test':>7}  coverage")
    for mid, name in info.vocabulary.items():
        cells = [info.counts.get(s, {}).get("labels", {}).get(mid, {}).get("windows", 0) for s in ("train", "valid", "test")]
        cov = info.coverage.get(mid, {})
        click.echo(f"{name[:32]:<32} {cells[0]:>7} {cells[1]:>7} {cells[2]:>7}  {cov.get('obtained', 0)}/{cov.get('requested', 0)} clips")
    reasons = Counter(failures.column("reason").to_pylist()) if failures.num_rows else {}
    click.echo(f"failures: {failures.num_rows}" + (" (" + ", ".join(f"{k}: {v}" for k, v in sorted(reasons.items())) + ")" if reasons else ""))


# ----------------------------------------------------------------------------------------- train


@main.command("train")
@click.option("--data", required=True, help="Dataset folder (local or s3://).")
@click.option("--out", required=True, help="Run folder for checkpoints, metrics and model.bundle.")
@click.option("--model", default="baseline", show_default=True)
@click.option("--hparams", default="{}", help="JSON object of model hyper-parameters.")
@click.option("--epochs", default=10, show_default=True)
@click.option("--batch-size", default=32, show_default=True)
@click.option("--learning-rate", default=1e-3, show_default=True)
@click.option("--workers", default=1, show_default=True)
@click.option("--gpus-per-worker", default=0.0, show_default=True)
@click.option("--cpus-per-worker", default=1.0, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--in-memory/--streaming", default=True, show_default=True, help="Hold the dataset in Ray's object store.")
@click.option("--patience", default=5, show_default=True, help="Early stopping on validation mAP (0: off).")
@click.option("--max-failures", default=2, show_default=True, help="Worker failures to recover from.")
@click.pass_context
def train_cmd(ctx, data, out, model, hparams, epochs, batch_size, learning_rate, workers, gpus_per_worker, cpus_per_worker, seed, in_memory, patience, max_failures):
    """Train a model with Ray Train and write <out>/model.bundle."""
    from sound_captions.train import BUNDLE_NAME, TrainConfig, train

    _start_ray(ctx)
    bundle = train(
        TrainConfig(
            data=data, out=out, model=model, hparams=json.loads(hparams), epochs=epochs, batch_size=batch_size,
            learning_rate=learning_rate, workers=workers, gpus_per_worker=gpus_per_worker, cpus_per_worker=cpus_per_worker,
            seed=seed, in_memory=in_memory, patience=patience, max_failures=max_failures,
        )
    )
    click.echo(f"best validation mAP {bundle.metrics.get('best_valid_map', float('nan')):.3f} → {out.rstrip('/')}/{BUNDLE_NAME}")


# --------------------------------------------------------------------------------------- caption


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--model", required=True, help="Model bundle (local or s3://).")
@click.option("--out", required=True, help="Output folder (local or s3://): mirrors the input layout.")
@click.option("--force", is_flag=True, help="Caption again even when outputs are up to date.")
@click.option("--smoothing", type=click.Choice(["hysteresis", "viterbi", "none"]), default="hysteresis", show_default=True)
@click.option("--vocabulary", default=None, help="CSV (mid,display_name,caption) replacing the packaged caption texts.")
@click.option("--merge-with-speech", "merge_with_speech", default=None, metavar="DIR_OR_URI",
              help="Folder of speech subtitles (<rel>.vtt or .srt); writes <out>/<rel>.sdh.vtt with both.")
@click.option("--chunk-s", default=60, show_default=True, help="Seconds of audio decoded per chunk (memory per decode worker).")
@click.option("--decode-cpus", default=1.0, show_default=True, help="CPUs per decode task.")
@click.option("--feature-cpus", default=1.0, show_default=True, help="CPUs per spectrogram task.")
@click.option("--feature-batch-size", default=64, show_default=True)
@click.option("--inference-actors", default=1, show_default=True, help="Upper size of the inference actor pool.")
@click.option("--cpus-per-actor", default=1.0, show_default=True)
@click.option("--gpus-per-actor", default=0.0, show_default=True)
@click.option("--batch-size", "inference_batch_size", default=256, show_default=True, help="Inference batch (windows).")
@click.option("--object-store-limit-mb", type=int, default=None, help="Cap on the object store this run may fill.")
@click.option("--scratch-dir", default=None, help="Where URL inputs are fetched (default: the temp dir).")
@click.pass_context
def caption(ctx, inputs, model, out, force, smoothing, vocabulary, merge_with_speech, chunk_s, decode_cpus, feature_cpus,
            feature_batch_size, inference_actors, cpus_per_actor, gpus_per_actor, inference_batch_size, object_store_limit_mb, scratch_dir):
    """Caption every video in INPUTS (folders, s3:// prefixes, URL lists, files).

    Exit status 1 when any input failed (the report lists each with its reason).
    """
    from sound_captions.caption.fetch import FetchOptions
    from sound_captions.caption.pipeline import CaptionOptions, caption_library, summary_text
    from sound_captions.caption.postprocess import PostprocessConfig

    _start_ray(ctx)
    run = caption_library(
        list(inputs),
        CaptionOptions(
            out=out, model=model, force=force, postprocess=PostprocessConfig(smoothing=smoothing), vocabulary=vocabulary,
            merge_with_speech=merge_with_speech, chunk_s=chunk_s, decode_cpus=decode_cpus, feature_cpus=feature_cpus,
            feature_batch_size=feature_batch_size, inference_actors=inference_actors, cpus_per_actor=cpus_per_actor,
            gpus_per_actor=gpus_per_actor, inference_batch_size=inference_batch_size,
            object_store_limit_mb=object_store_limit_mb, fetch=FetchOptions(scratch_dir=scratch_dir),
        ),
        progress=lambda r: click.echo(f"{r.status:<9} {r.input}" + (f"  ({r.reason})" if r.reason and r.status == "failed" else ""), err=True),
    )
    click.echo(summary_text(run), nl=False)
    if run.failed:
        raise SystemExit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
