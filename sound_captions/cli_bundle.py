"""``sound-captions bundle ...``: make model bundles from pretrained taggers, and adjust them."""

from __future__ import annotations

import json

import click


@click.group()
def bundle() -> None:
    """Make model bundles from pretrained taggers, and adjust them."""


@bundle.command("import-panns")
@click.argument("checkpoint")
@click.option("--out", required=True, help="Bundle file to write (local or s3://), e.g. panns.bundle.")
@click.option("--threshold", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.3, show_default=True, help="Every class's threshold (tune them with `bundle tune-thresholds`).")
@click.option("--vocabulary", default=None, help="Caption vocabulary CSV (mid or display_name, caption) instead of the packaged one.")
@click.option("--gate-dbfs", type=float, default=None, help="Energy gate: seconds quieter than this (RMS dBFS) are never captioned.")
def import_panns_cmd(checkpoint, out, threshold, vocabulary, gate_dbfs):
    """A PANNs Cnn14 checkpoint (e.g. Cnn14_16k_mAP=0.438.pth, downloaded by you) → a model bundle
    with 527 AudioSet classes, PANNs' own log-mel front-end, thresholds and caption texts."""
    from sound_captions.bundle import save_bundle
    from sound_captions.pretrained import import_panns

    made = import_panns(checkpoint, threshold=threshold, vocabulary_uri=vocabulary, gate_dbfs=gate_dbfs)
    save_bundle(made, out)
    cfg = made.feature_config
    click.echo(
        f"Cnn14 at {cfg.sample_rate_hz // 1000} kHz, {len(made.labels)} classes, {len(made.caption_text)} with caption texts, "
        f"threshold {threshold:g}, bundle {made.digest()} → {out}"
    )


@bundle.command("tune-thresholds")
@click.argument("model_uri")
@click.option("--data", "data_uri", required=True, help="Labelled dataset (built with the bundle's features, e.g. --features panns-16k).")
@click.option("--split", default="valid", show_default=True, help="Split to tune on; 'all' for every row.")
@click.option("--out", required=True, help="Bundle file to write (the input is never changed).")
@click.option("--target-precision", type=click.FloatRange(0, 1, min_open=True), default=0.9, show_default=True)
@click.option("--min-positives", type=click.IntRange(0), default=5, show_default=True, help="Labels with fewer positive windows get the pooled threshold.")
def tune_thresholds_cmd(model_uri, data_uri, split, out, target_precision, min_positives):
    """Tune a bundle's thresholds on a labelled dataset, as `train` does, for the labels it annotates."""
    from sound_captions.bundle import load_bundle, save_bundle
    from sound_captions.pretrained import tune_bundle_thresholds

    tuned, summary = tune_bundle_thresholds(
        load_bundle(model_uri), data_uri, split=None if split == "all" else split,
        target_precision=target_precision, min_positives=min_positives,
    )
    save_bundle(tuned, out)
    click.echo(json.dumps({"windows": summary["windows"], "labels_tuned": len(summary["tuned"]), "pooled": summary["pooled"], "out": out}))
