"""``sound-captions dataset clean``: find wrong and missing labels, or apply the decisions
(``sound_captions/clean``; docs/clean.md)."""

from __future__ import annotations

import json

import click

from sound_captions.clean.options import CleanConfig
from sound_captions.cli_options import options_from, take


@click.command("clean")
@click.argument("data")
@click.option("--out", required=True, help="Review folder (examining), or the new dataset folder (with --apply / --drop-above).")
@click.option("--apply", "decisions", default=None, metavar="CSV", help="Write a cleaned version: the decisions (review page's decisions.csv, or suspicions.csv with --drop-above).")
@click.option("--drop-above", type=click.FloatRange(0, 1), default=None, help="With --apply: drop every undecided clip whose suspicion is at least this.")
@options_from(CleanConfig)
@click.option("--hparams", default="{}", help="JSON object of the fold models' hyper-parameters.")
@click.option("--splits", default="train,valid,test", show_default=True, help="Splits whose clips are examined.")
@click.option("--page-clips", default=200, show_default=True, help="Most suspicious clips shown on review.html.")
@click.option("--audio/--no-audio", default=True, show_default=True, help="Embed each shown clip's audio in the page (cut from its source).")
@click.option("--clap", "clap_weights", default=None, metavar="FILE", help="Also score every clip zero-shot with this CLAP model file (msclap's CLAP_weights_<version>.pth; needs the clap extra).")
@click.option("--clap-text", default=None, metavar="DIR", help="Folder with the CLAP text model's tokenizer and config.json (default: Hugging Face's local cache).")
@click.option("--clap-version", type=click.Choice(["2022", "2023"]), default="2023", show_default=True, help="Which msclap architecture the --clap file holds.")
@click.pass_context
def dataset_clean(ctx, data, out, decisions, drop_above, hparams, splits, page_clips, audio, clap_weights, clap_text, clap_version, **options):
    """Find probably wrong or missing labels: out-of-fold predictions (k-fold over clips, trained
    with `train`) scored by cleanlab, written to OUT/suspicions.csv, seconds.csv and a review page
    (review.html). With --apply, write the cleaned dataset to OUT; the original is never changed.

    With --clap, a CLAP model's zero-shot scores of every clip and second are shown beside.

    Needs the clean extra: pip install 'sound-captions[clean]' (and [clap] for --clap)."""
    from sound_captions.clean.apply import DecisionsError, apply_decisions
    from sound_captions.clean.folds import CleanInputError
    from sound_captions.clean.review import clean_dataset
    from sound_captions.clean.suspicion import CleanlabMissingError, require_cleanlab

    if drop_above is not None and not decisions:
        raise click.UsageError("--drop-above goes with --apply SUSPICIONS_CSV")
    if decisions and clap_weights:
        raise click.UsageError("--clap scores clips for the review; --apply only writes the decisions")
    if decisions:
        try:
            made = apply_decisions(data, decisions, out, drop_above=drop_above)
        except (DecisionsError, FileExistsError) as exc:
            raise click.UsageError(str(exc)) from exc
        record = made.provenance
        click.echo(f"clips dropped: {len(record['dropped'])}, relabelled: {len(record['relabelled'])} → {out} ({len(made.shards)} shard(s)); {data} unchanged")
        return
    try:
        cfg = CleanConfig(hparams=json.loads(hparams), splits=tuple(s.strip() for s in splits.split(",") if s.strip()), **take(CleanConfig, options))
    except (ValueError, TypeError) as exc:
        raise click.UsageError(str(exc)) from exc
    try:
        require_cleanlab()  # before k models are trained, not after
    except CleanlabMissingError as exc:
        raise click.ClickException(str(exc)) from exc
    clap = None
    if clap_weights:  # loaded (and checked) before any fold is trained
        from sound_captions.clean.clap import ClapMissingError, ClapModelError, load_clap

        try:
            clap = load_clap(clap_weights, clap_text, clap_version)
        except ClapMissingError as exc:
            raise click.ClickException(str(exc)) from exc
        except ClapModelError as exc:
            raise click.BadParameter(str(exc), param_hint="--clap") from exc
    elif clap_text:
        raise click.UsageError("--clap-text goes with --clap FILE")
    from sound_captions.cli import _start_ray  # loaded by now: the dataset group holds this command

    _start_ray(ctx)
    try:
        report = clean_dataset(data, out, cfg, page_clips=page_clips, audio=audio, clap=clap, progress=lambda line: click.echo(line, err=True))
    except CleanInputError as exc:
        raise click.UsageError(str(exc)) from exc
    click.echo(f"{len(report.clips)} clips examined: cleanlab flags {report.flagged}, {report.suggested} with a suggested change → {out}/review.html")
