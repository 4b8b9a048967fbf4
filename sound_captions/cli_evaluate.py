"""``sound-captions evaluate`` (a bundle on a dataset split) and ``evaluate-run`` (a caption
run's .vtt files against per-second truth)."""

from __future__ import annotations

import json

import click


@click.command("evaluate")
@click.option("--model", "model_uri", required=True, help="Model bundle URI.")
@click.option("--data", "data_uri", required=True, help="Dataset root (holds dataset.json).")
@click.option("--split", default="test", show_default=True, help="Split to evaluate; 'all' for every row.")
@click.option("--out", "out_dir", default=None, help="Folder (local or s3://) for report.json and PNG plots.")
@click.option("--batch-size", default=128, show_default=True)
@click.option("--device", default="cpu", show_default=True)
def evaluate_cmd(model_uri, data_uri, split, out_dir, batch_size, device):
    """Per-second P/R/F1/ER (sed_eval segment-based), AP and mAP of a bundle on a dataset split."""
    from sound_captions.evaluate import evaluate

    # a missing or corrupt bundle or dataset, a feature mismatch: one line, exit 2 (see _Cli)
    report = evaluate(model_uri, data_uri, split=None if split == "all" else split, out_dir=out_dir, batch_size=batch_size, device=device)
    click.echo(json.dumps({"n_windows": report["n_windows"], **report["summary"]}, indent=2))


@click.command("evaluate-run")
@click.argument("run_out")
@click.option("--truth", "truth", required=True, metavar="CSV_OR_DIR",
              help="Events CSV (source,onset_s,offset_s,label), or a folder/s3:// prefix of held-out media with their SDH subtitles beside them.")
@click.option("--out", "out_dir", default=None, help="Folder (local or s3://) for report.json, PNG plots and index.html.")
@click.option("--model", default=None, help="Bundle whose caption texts the run used (default: the packaged vocabulary).")
@click.option("--vocabulary", default=None, help="The --vocabulary CSV the run was captioned with, if any.")
@click.option("--min-overlap-s", type=click.FloatRange(0, 1, min_open=True), default=0.5, show_default=True,
              help="A truth event counts for second k when it overlaps [k, k+1) by at least this much.")
@click.option("--subtitle-map", default=None, metavar="CSV", help="With subtitle truth: the text,label CSV the dataset was built with (dataset build --subtitle-map).")
def evaluate_run_cmd(run_out, truth, out_dir, model, vocabulary, min_overlap_s, subtitle_map):
    """Per-second P/R/F1/ER of a caption run's .vtt files (what a viewer reads) against the truth,
    with false captions in silence, event timing errors and confusions; --out writes report.json,
    f1_per_class.png, confusion.png and a self-contained index.html."""
    from sound_captions.evaluate_run import evaluate_run, summary_text

    caption_text = None
    if model:  # the texts the run used: the bundle's, a --vocabulary's, and those derived from names
        from sound_captions.bundle import load_bundle
        from sound_captions.caption.vocabulary import run_caption_texts

        b = load_bundle(model)
        caption_text = run_caption_texts(b.labels, b.label_names, b.caption_text, b.training, vocabulary).texts
    elif vocabulary:
        from sound_captions.caption.vocabulary import CaptionVocabulary

        caption_text = CaptionVocabulary.load(vocabulary).captions
    report = evaluate_run(run_out, truth, out_dir=out_dir, caption_text=caption_text, min_overlap_s=min_overlap_s, subtitle_map=subtitle_map)
    click.echo(summary_text(report), nl=False)
    if out_dir:
        for uri in (report["report_uri"], *report["plots"].values(), report["page_uri"]):
            click.echo(f"wrote {uri}")
