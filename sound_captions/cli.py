"""``sound-captions``: the command line. Thin: parse options, start Ray, call the library."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys

import click

from sound_captions import __version__
from sound_captions.caption.options import CaptionOptions
from sound_captions.caption.postprocess import PostprocessConfig
from sound_captions.cli_bundle import bundle
from sound_captions.cli_clean import dataset_clean
from sound_captions.cli_evaluate import evaluate_cmd, evaluate_run_cmd
from sound_captions.cli_options import options_from, take
from sound_captions.dataset.options import BuildOptions
from sound_captions.download.options import DownloadOptions
from sound_captions.train.config import TrainConfig

# Ray Data reads a Parquet dataset's footers on a pool of FooterReader actors that it starts for
# every read: 32 of them by default, sized for a cluster listing thousands of files. On one
# machine those 32 new actor processes cost about a second per read (a one-shard read: 1.7-2.4 s
# with 32, 0.8-0.9 s with 2, measured on 2 cores). 2 actors of 128 concurrent footer reads each
# are ample for a dataset of hundreds of shards (not measured on a large s3:// dataset: one of
# many thousands may want the variable raised). Set for the local Ray that init_ray starts (its
# workers inherit the environment); a value the user set wins, and a cluster keeps its own.
LOCAL_RAY_ENV = {"RAY_DATA_PARQUET_FOOTER_NUM_ACTORS": "2"}


def use_local_ray_env() -> None:
    """``LOCAL_RAY_ENV`` into this process's environment (call before a local ``ray.init``)."""
    for key, value in LOCAL_RAY_ENV.items():
        os.environ.setdefault(key, value)


def init_ray(num_cpus: int | None = None, address: str | None = None, verbose: int = 0) -> None:
    """Join the Ray cluster named by ``--ray-address``/``RAY_ADDRESS``, else start a local one.

    Locally, at least 4 logical CPUs are declared (even on 2 cores) so that the pipeline's
    stages and actor pools all get slots; the OS shares the real cores among them.
    """
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_ACCEPT_CLUSTER_CONFIG_WITHOUT_AUTH", "1")
    address = address or os.environ.get("RAY_ADDRESS")
    if address:  # joining a cluster: Ray's "Connecting to existing Ray cluster" line stays
        ray.init(address=address, log_to_driver=True)
        return
    # a local Ray's own notices (start-up, token auth) only with -v: errors still show
    level = logging.ERROR if not verbose else logging.INFO
    use_local_ray_env()
    ray.init(num_cpus=num_cpus or max(4, os.cpu_count() or 1), include_dashboard=False, log_to_driver=False, logging_level=level)


def _quiet_ray_data(ctx: click.Context | None = None) -> None:
    """Ray Data's console notes ("Progress bars disabled", "execution finished in …") only with
    ``-v``; its log file keeps them. The console handlers' levels come back when the command ends
    (nothing outlives it: no environment variable is changed)."""
    import ray

    data_ctx = ray.data.DataContext.get_current()
    data_ctx.enable_progress_bars = sys.stderr.isatty()
    data_ctx.print_on_execution_start = False
    if ctx is None or (ctx.obj or {}).get("verbose"):
        return
    consoles = [
        h for h in logging.getLogger("ray.data").handlers
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler) and h.level < logging.ERROR
    ]
    levels = [h.level for h in consoles]
    for handler in consoles:
        handler.setLevel(logging.ERROR)

    def restore() -> None:
        for handler, level in zip(consoles, levels, strict=True):
            handler.setLevel(level)

    ctx.call_on_close(restore)


def user_errors() -> tuple[type[Exception], ...]:
    """The project's own errors about what a user gave (a bundle, a path, a dataset, an option):
    the CLI prints them as one line and exits 2 (the traceback only under ``-v``)."""
    from sound_captions.bundle import BundleError
    from sound_captions.dataset.plan import PlanError
    from sound_captions.dataset.shards import NotADatasetError
    from sound_captions.distill import DistillationError
    from sound_captions.evaluate import NoEvaluationDataError
    from sound_captions.evaluate_run import RunEvaluationError
    from sound_captions.features import FeatureConfigMismatchError
    from sound_captions.models import PretrainedWeightsError, UnknownModelError
    from sound_captions.pretrained import CheckpointError
    from sound_captions.storage import StorageError

    return (
        BundleError, CheckpointError, DistillationError, RunEvaluationError, PlanError, NotADatasetError, NoEvaluationDataError, FeatureConfigMismatchError,
        PretrainedWeightsError, UnknownModelError, StorageError,
    )


class _Cli(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.exceptions.Exit:
            raise
        except Exception as exc:
            if not isinstance(exc, user_errors()):
                raise
            if (ctx.obj or {}).get("verbose"):
                import traceback

                traceback.print_exc()
            click.echo("error: " + " ".join(str(exc).split()), err=True)
            ctx.exit(2)


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sound-captions")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("--ray-address", envvar="RAY_ADDRESS", default=None, help="Ray cluster to join (default: a local one).")
@click.option("--num-cpus", type=int, default=None, help="Logical CPUs of a local Ray cluster (default: max(4, cores)).")
@click.pass_context
def main(ctx: click.Context, verbose: int, ray_address: str | None, num_cpus: int | None) -> None:
    """Sound captions ([dog barking], [applause]) as WebVTT for whole video libraries."""
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)], format="%(levelname)s %(name)s: %(message)s")
    ctx.obj = {"ray_address": ray_address, "num_cpus": num_cpus, "verbose": verbose}


def _start_ray(ctx: click.Context) -> None:
    init_ray(ctx.obj.get("num_cpus"), ctx.obj.get("ray_address"), ctx.obj.get("verbose", 0))
    _quiet_ray_data(ctx)


# ------------------------------------------------------------------------------------------ demo


@main.command()
@click.option("--workdir", default="demo-work", show_default=True, help="Where the corpus, dataset, model and captions go.")
@click.option("--model", default="baseline", show_default=True, help="Architecture to train.")
@click.option("--epochs", default=12, show_default=True)
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
@click.option("--out", required=True, help="Dataset folder: local path or s3:// URI.")
@click.option("--manifest", "manifests", multiple=True, help="Manifest CSV (source,start_s,end_s,labels); repeatable.")
@click.option("--audioset-csv", "audioset_csvs", multiple=True, help="AudioSet segment list (e.g. balanced_train_segments.csv); repeatable.")
@click.option("--audioset-strong", "audioset_strong", multiple=True, help="AudioSet strong-label TSV (event times: per-second labels); repeatable.")
@click.option("--events", "events", multiple=True, help="Events manifest CSV (source,onset_s,offset_s,label): per-second labels of whole media; repeatable.")
@click.option("--subtitles", "subtitles", multiple=True, metavar="DIR_OR_URI",
              help="Media with their SDH subtitles beside them (<name>.vtt/.srt): sound cues label the seconds they cover; repeatable.")
@click.option("--subtitle-map", default=None, metavar="CSV", help="With --subtitles: your own text,label rows (label '-' ignores a text), looked up first.")
@click.option("--allow-overlapping-cues", is_flag=True, help="With --subtitles: use files whose cues overlap in time (refused by default as a timing error).")
@click.option("--labels", default="", help="Classes to mine, ';'-separated display names or mids (required with AudioSet lists).")
@click.option("--include-descendants", is_flag=True, help="A chosen class also matches the classes below it in the ontology.")
@click.option("--per-label-cap", type=int, default=None, help="At most this many clips per chosen label (balanced, seeded).")
@click.option("--negatives", type=float, default=0.0, show_default=True, help="Share of clips with none of the chosen labels, kept as explicit negatives.")
@click.option("--seed", default=0, show_default=True, help="Seed of the selection and the split.")
@click.option("--scratch", default=None, help="Download folder + archive (default: <out>/.scratch, or a local cache folder for s3:// outputs). On a cluster: a shared folder.")
@click.option("--features", "feature_preset", default="64x64x1", show_default=True, help="64x64x1, 128x128x1 (the study's), 256x256x3, linear-128x128x1, ...; panns-16k (or -8k, -32k) for a PANNs teacher or bundle.")
@click.option("--split", "split_fractions", default="0.8,0.1,0.1", show_default=True, help="train,valid,test fractions (by clip).")
@options_from(BuildOptions, exclude=("seed",), aliases={"target_shard_mb": "--shard-mb", "fetch_concurrency": "--concurrency"})
@options_from(
    DownloadOptions, exclude=("ffmpeg_location",),
    aliases={"backoff_base_s": "--backoff", "per_host_min_interval_s": "--per-host-interval", "cookies_file": "--cookies"},
)
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar (interactive) or a line every 30 s.")
@click.option("--augment-copies", default=0, show_default=True, help="Train split: augmented copies of each clip besides the original (gain, shift, noise).")
@click.option("--augment-gain-db", default="-6,6", show_default=True, help="Copies: random gain range LO,HI in dB (no effect on normalised features).")
@click.option("--augment-noise-snr", default="20", show_default=True, help="Copies: white noise at this SNR in dB, or 'none'.")
@click.option("--augment-shift-s", type=float, default=0.25, show_default=True, help="Copies: random time shift of up to ± this many seconds (0: none).")
@click.option("--overlap-hop-s", type=float, default=None, help="Train split: 1-s windows every this many seconds (e.g. 0.5) instead of every second.")
@click.option("--together", default=0, show_default=True, help="Train split: stitched sequences led by each clip (clips of other classes, per-second labels).")
@click.option("--together-clips", default=3, show_default=True, help="Clips per stitched sequence.")
@click.option("--together-seconds", default="1,3", show_default=True, help="Whole seconds each clip gives a sequence: LO,HI.")
@click.pass_context
def dataset_build(
    ctx, out, manifests, audioset_csvs, audioset_strong, events, subtitles, subtitle_map, allow_overlapping_cues, labels, include_descendants, per_label_cap, negatives, seed, scratch,
    feature_preset, split_fractions, progress, augment_copies, augment_gain_db, augment_noise_snr,
    augment_shift_s, overlap_hop_s, together, together_clips, together_seconds, **settings,
):
    """Mine labelled clips (AudioSet lists or manifests): download the segments, decode, cut 1-s
    windows, compute spectrograms, write shards + failures.parquet + dataset.json.

    A rerun resumes: nothing already downloaded is fetched again, and a finished dataset of the
    same requests is left as it is."""
    from sound_captions.dataset.augmentation import augment_config_from_options
    from sound_captions.dataset.build import build_dataset, default_scratch_dir
    from sound_captions.dataset.plan import PlanError, plan_build
    from sound_captions.dataset.progress import BuildProgress
    from sound_captions.features import FeatureConfig
    from sound_captions.sources.subtitles import subtitle_summary
    from sound_captions.storage import StorageError, check_uri

    if not (manifests or audioset_csvs or audioset_strong or events or subtitles):
        raise click.UsageError("give at least one source: --manifest, --events, --subtitles, --audioset-csv or --audioset-strong")
    if (subtitle_map or allow_overlapping_cues) and not subtitles:
        raise click.UsageError("--subtitle-map and --allow-overlapping-cues go with --subtitles")
    try:
        plan = plan_build(
            manifests=manifests, audioset_csvs=audioset_csvs, audioset_strong=audioset_strong, events=events,
            subtitles=subtitles, subtitle_map=subtitle_map, allow_overlapping_cues=allow_overlapping_cues,
            labels=[x for x in labels.split(";") if x.strip()], include_descendants=include_descendants,
            per_label_cap=per_label_cap, negatives=negatives, seed=seed,
        )
    except (PlanError, ValueError, StorageError) as exc:
        raise click.UsageError(str(exc)) from exc
    for report in plan.subtitles:
        click.echo(subtitle_summary(report), err=True)
    fractions = tuple(float(x) for x in split_fractions.split(","))
    try:
        augment = augment_config_from_options(
            copies=augment_copies, gain_db=augment_gain_db, noise_snr_db=augment_noise_snr, shift_s=augment_shift_s,
            overlap_hop_s=overlap_hop_s, together=together, together_clips=together_clips, together_seconds=together_seconds, seed=seed,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    build = take(BuildOptions, settings, exclude=("seed",))
    try:
        download = DownloadOptions(
            scratch_dir=scratch or default_scratch_dir(check_uri(out)), ffmpeg_location=build["ffmpeg"],
            **take(DownloadOptions, settings, exclude=("ffmpeg_location",)),
        )
        options = BuildOptions(feature_config=FeatureConfig.preset(feature_preset), split_fractions=fractions, seed=seed, augment=augment, **build)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    from sound_captions.download import needs_download

    fetching = sum(needs_download(r) for r in plan.requests)
    click.echo(f"{len(plan.requests)} clips to build ({len(plan.failures)} source rows unusable)" + (f"; {fetching} to download into {download.scratch_dir}" if fetching else ""), err=True)
    _start_ray(ctx)
    meter = BuildProgress(len(plan.requests)) if progress else None
    try:
        with meter if meter is not None else contextlib.nullcontext():
            report = build_dataset(
                plan.requests, out, options, source_failures=plan.failures, vocabulary=plan.vocabulary, sources=plan.sources,
                download=download, selection=plan.selection, label_sources=plan.label_sources, progress=meter,
            )
    except FileExistsError as exc:
        raise click.ClickException(str(exc)) from exc
    if report.skipped:
        click.echo(f"{report.root} already holds this dataset; nothing to do (--overwrite rebuilds it)")
    click.echo(f"{report.n_clips} clips → {report.n_windows} windows in {len(report.info.shards)} shard(s) at {report.root}")
    click.echo(f"{report.n_failed} of {report.n_requested} items failed" + (f": {report.failure_reasons}" if report.failure_reasons else ""))


@dataset.command("stats")
@click.argument("uri")
@click.option("--json", "as_json", is_flag=True, help="Print dataset.json's counts, coverage and failure reasons as JSON.")
def dataset_stats(uri, as_json):
    """Counts per label and split, coverage (requested vs obtained), failure reasons."""
    from sound_captions.dataset.report import stats_dict, stats_text

    stats = stats_dict(uri)
    click.echo(json.dumps(stats, indent=2) if as_json else stats_text(stats))


@dataset.command("preview")
@click.argument("uri")
@click.option("--out", required=True, help="PNG to write (local path or s3://).")
@click.option("--per-label", default=6, show_default=True, help="Example spectrograms per label.")
@click.option("--split", default=None, help="Only this split (train/valid/test).")
@click.option("--seed", default=0, show_default=True)
def dataset_preview(uri, out, per_label, split, seed):
    """A grid of spectrograms: one row per label, a few examples each (look before training)."""
    from sound_captions.dataset.report import preview_grid

    n = preview_grid(uri, out, per_label=per_label, split=split, seed=seed)
    click.echo(f"{n} spectrograms → {out}")


# ----------------------------------------------------------------------------------------- train


_TRAIN_OWN = ("data", "out", "in_memory", "label_weight", "distill_weight")  # options written out below


@main.command("train")
@click.option("--data", required=True, help="Dataset folder (local or s3://).")
@click.option("--out", required=True, help="Run folder for checkpoints, metrics and model.bundle.")
@options_from(TrainConfig, exclude=_TRAIN_OWN)
@click.option("--hparams", default="{}", help="JSON object of model hyper-parameters.")
@click.option(
    "--augment", default="{}",
    help='JSON of batch augmentation, e.g. {"spec_time_masks": 2, "spec_freq_masks": 2, "mixup_alpha": 0.2, "together_prob": 0.3}.',
)
@click.option("--in-memory/--streaming", default=True, show_default=True, help="Hold the dataset in Ray's object store.")
@click.option("--unlabelled", multiple=True, help="Folder, s3:// prefix or URL list of your own media for the teacher to label (repeatable; needs --teacher).")
@click.option("--label-weight", type=click.FloatRange(0), default=0.1, show_default=True, help="With --teacher: weight of the loss against the labels.")
@click.option("--distill-weight", type=click.FloatRange(0), default=0.9, show_default=True, help="With --teacher: weight of the loss against the teacher.")
@click.pass_context
def train_cmd(ctx, data, out, hparams, augment, in_memory, unlabelled, label_weight, distill_weight, **options):
    """Train a model with Ray Train and write <out>/model.bundle."""
    from sound_captions.train import BUNDLE_NAME, epoch_line, train

    teacher = options["teacher"]
    if not teacher and (unlabelled or label_weight != 0.1 or distill_weight != 0.9):
        raise click.UsageError("--unlabelled, --label-weight and --distill-weight need a --teacher")
    if teacher and label_weight + distill_weight <= 0:
        raise click.UsageError("--label-weight and --distill-weight cannot both be 0")

    settings = take(TrainConfig, options, exclude=_TRAIN_OWN)
    try:
        hparams, augment = json.loads(hparams), json.loads(augment)
    except ValueError as exc:
        raise click.UsageError(f"--hparams and --augment take a JSON object: {exc}") from exc
    _start_ray(ctx)
    bundle = train(
        TrainConfig(
            data=data, out=out, hparams=hparams, augment=augment, in_memory=in_memory, unlabelled=list(unlabelled),
            label_weight=label_weight, distill_weight=distill_weight, **settings,
        ),
        progress=lambda m: click.echo(epoch_line(m, settings["epochs"]), err=True),
    )
    click.echo(f"best validation mAP {bundle.metrics.get('best_valid_map', float('nan')):.3f} → {out.rstrip('/')}/{BUNDLE_NAME}")


# --------------------------------------------------------------------------------------- caption

_CAPTION_OWN = ("out", "model", "force", "vocabulary", "merge_with_speech")  # options written out above


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--model", required=True, help="Model bundle (local or s3://).")
@click.option("--out", required=True, help="Output folder (local or s3://): mirrors the input layout.")
@click.option("--force", is_flag=True, help="Caption again even when outputs are up to date.")
@click.option("--vocabulary", default=None, help="CSV (mid,display_name,caption) replacing the packaged caption texts.")
@click.option("--merge-with-speech", "merge_with_speech", default=None, metavar="DIR_OR_URI",
              help="Folder of speech subtitles (<rel>.vtt or .srt); writes <out>/<rel>.sdh.vtt with both.")
@options_from(CaptionOptions, exclude=_CAPTION_OWN, aliases={"inference_batch_size": "--batch-size"})
@options_from(PostprocessConfig)
@click.option("--scratch-dir", default=None, help="Where URL inputs are fetched (default: the temp dir).")
@click.pass_context
def caption(ctx, inputs, model, out, force, vocabulary, merge_with_speech, scratch_dir, **options):
    """Caption every video in INPUTS (folders, s3:// prefixes, URL lists, files).

    Every run and post-processing setting of CaptionOptions and PostprocessConfig is an option
    here (and a key of a caption job's YAML). Exit status 1 when any input failed (the report
    lists each with its reason).
    """
    from sound_captions.bundle import load_bundle
    from sound_captions.caption.fetch import FetchOptions
    from sound_captions.caption.pipeline import caption_library, summary_text

    try:  # a bad setting (a batch of 0, min_event_s > max_cue_s): one line, exit 2
        run_options = CaptionOptions(
            out=out, model=model, force=force, vocabulary=vocabulary, merge_with_speech=merge_with_speech,
            postprocess=PostprocessConfig(**take(PostprocessConfig, options)), fetch=FetchOptions(scratch_dir=scratch_dir),
            **take(CaptionOptions, options, exclude=_CAPTION_OWN),
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    load_bundle(model)  # a missing, wrong or corrupt bundle: one line, exit 2, before Ray starts
    _start_ray(ctx)
    run = caption_library(
        list(inputs),
        run_options,
        progress=lambda r: click.echo(f"{r.status:<9} {r.input}" + (f"  ({r.reason})" if r.reason and r.status == "failed" else ""), err=True),
    )
    click.echo(summary_text(run), nl=False)
    if run.failed:
        raise SystemExit(1)


# --------------------------------------------------------------------------------------- preview


@main.command("preview")
@click.argument("video")
@click.option("--captions", required=True, help="Sound captions WebVTT (path, file:// or s3://).")
@click.option("--scores", default=None, help="Per-second scores Parquet for the heat map.")
@click.option("--speech", default=None, help="Speech subtitles WebVTT, shown as a second track.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option("--title", default=None)
@click.option("--link-video", is_flag=True, help="Link a local video by relative path instead of copying it.")
@click.option(
    "--transcode", type=click.Choice(["auto", "always", "never"]), default="auto", show_default=True,
    help="Write a WebM proxy when the browser cannot play the file (auto), always, or never.",
)
@click.option("--max-rows", type=int, default=16, show_default=True, help="Heat-map rows (labels by peak).")
def preview_cmd(video, captions, scores, speech, out_dir, title, link_video, transcode, max_rows):
    """Write a self-contained HTML page to watch VIDEO with its sound captions."""
    from sound_captions.preview import write_preview

    click.echo(
        write_preview(
            video, captions, out_dir, scores_uri=scores, speech_uri=speech, title=title,
            copy_video=not link_video, transcode=transcode, max_rows=max_rows,
        )
    )


@main.command("preview-run")
@click.argument("run_out")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option("--copy-video", is_flag=True, help="Copy local videos next to the pages (default: link them).")
@click.option("--transcode", type=click.Choice(["auto", "always", "never"]), default="auto", show_default=True)
@click.option("--max-rows", type=int, default=16, show_default=True)
def preview_run_cmd(run_out, out_dir, copy_video, transcode, max_rows):
    """Preview every captioned video of a caption run (RUN_OUT/_report/report.parquet) and write index.html."""
    from sound_captions.preview import write_run_previews

    click.echo(write_run_previews(run_out, out_dir, copy_video=copy_video, transcode=transcode, max_rows=max_rows))


main.add_command(bundle)  # sound_captions/cli_bundle.py
dataset.add_command(dataset_clean)  # sound_captions/cli_clean.py
main.add_command(evaluate_cmd)  # sound_captions/cli_evaluate.py
main.add_command(evaluate_run_cmd)

if __name__ == "__main__":  # pragma: no cover
    main()
