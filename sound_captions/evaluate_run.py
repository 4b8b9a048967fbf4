"""A caption run's ``.vtt`` files (what a viewer reads) + per-second truth → a report.

    <run>/_report/report.parquet ─► each captioned input's .vtt ─► seconds it captions, per class
    events CSV or SDH subtitles (load_truth)   ─► seconds each class truly sounds
                                              ─► per-second P/R/F1/ER, false captions in silence,
                                                 onset/offset errors, confusions → report.json
                                                 (+ PNG plots and index.html: ``evaluate_run_page``)

Seconds: a caption is on in second k when a cue covers all of [k, k+1) (cues are whole seconds);
a truth class is on when its events overlap [k, k+1) by at least ``min_overlap_s`` (the dataset
build's rule, ``dataset/stages.second_labels``). The ontology is honoured: a caption of a class
counts for every truth class it lies below (``[piano music]`` is right for truth "Music"), and a
caption of a class the truth does not name is a false caption of that class.

Caption texts map back to classes through the caption vocabulary (the packaged one, or the
bundle's with ``model``); a cue text that maps to no class is counted and reported.
"""

from __future__ import annotations

import io
import json
import os
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np
import pyarrow.parquet as pq

from sound_captions import storage
from sound_captions.caption.cues import read_cues
from sound_captions.caption.report import REPORT_DIR
from sound_captions.caption.style import base_caption
from sound_captions.dataset.stages import second_labels
from sound_captions.metrics import json_safe, segment_metrics
from sound_captions.ontology import Ontology
from sound_captions.sources.events import read_events
from sound_captions.sources.requests import ClipRequest, SourceFailure
from sound_captions.sources.subtitles import read_subtitle_library

REPORT_FORMAT = "sound-captions/run-evaluation/1"
REPORT_NAME = "report.json"


class RunEvaluationError(ValueError):
    """The caption run or the truth cannot be evaluated (the message says why)."""


@dataclass(frozen=True)
class Video:
    input: str
    vtt_uri: str
    n_seconds: int


def captioned_videos(run_out: str) -> list[Video]:
    """The inputs a caption run captioned, from ``<run>/_report/report.parquet``."""
    uri = storage.join(run_out, REPORT_DIR, "report.parquet")
    if not storage.exists(uri):
        raise RunEvaluationError(f"{run_out}: no {REPORT_DIR}/report.parquet (not the output folder of a caption run)")
    rows = pq.read_table(io.BytesIO(storage.read_bytes(uri))).to_pylist()
    return [
        Video(r["input"], r["output_vtt"], _seconds(r))
        for r in rows
        if r["status"] in ("captioned", "skipped") and r["output_vtt"] and storage.exists(r["output_vtt"])
    ]


def _seconds(row: dict) -> int:
    """A captioned input's length in seconds: the report's, or (a skipped input: the report has
    none) its ``.scores.parquet``'s row count."""
    if row["duration_s"]:
        return int(round(row["duration_s"]))
    scores = row["output_vtt"].removesuffix(".vtt") + ".scores.parquet"
    try:
        return pq.read_metadata(io.BytesIO(storage.read_bytes(scores))).num_rows
    except (storage.StorageError, OSError, ValueError):
        return 0


def _key(uri: str) -> str:
    """How a truth source and a caption input are matched: the path without its suffix (local
    paths made absolute)."""
    text = uri.removeprefix("file://")
    if "://" not in text:
        text = os.path.abspath(text)
    return str(PurePosixPath(text).with_suffix(""))


def caption_classes(caption_text: dict[str, str]) -> dict[str, str]:
    """Caption text → class (``[dog barking]`` → ``/m/05tny_``)."""
    return {text: mid for mid, text in caption_text.items()}


def caption_seconds(vtt_text: str, text_to_label: dict[str, str], n_seconds: int, unknown: Counter) -> list[set[str]]:
    """Per second, the classes a viewer sees captioned."""
    on: list[set[str]] = [set() for _ in range(n_seconds)]
    for cue in read_cues(vtt_text):
        for line in [" ".join(cue.lines)] + list(cue.lines):
            label = text_to_label.get(line) or text_to_label.get(base_caption(line))
            if label:
                break
        else:
            unknown[base_caption(" ".join(cue.lines))] += 1
            continue
        for k in range(cue.start_ms // 1000, min(n_seconds, -(-cue.end_ms // 1000))):
            if k * 1000 >= cue.start_ms and (k + 1) * 1000 <= cue.end_ms:
                on[k].add(label)
    return on


def _implied(label: str, truth_classes: Sequence[str], below: dict[str, set[str]]) -> set[str]:
    """The truth classes a caption of ``label`` counts for: itself and every one above it."""
    hits = {t for t in truth_classes if label == t or label in below[t]}
    return hits or {label}


def _runs(active: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) seconds of each run of True."""
    padded = np.concatenate([[False], active, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def load_truth(truth: str, ontology: Ontology, subtitle_map: str | None = None) -> tuple[list[ClipRequest], list[SourceFailure]]:
    """The truth to judge a run against: one request per source with its events, and the rows
    or files that could not be used. ``truth`` is an events CSV (``sources/events.read_events``)
    or a folder / s3:// prefix of held-out media with their human SDH subtitles beside them
    (``sources/subtitles.read_subtitle_library``, the reader ``dataset build --subtitles`` uses,
    with the same ``subtitle_map``)."""
    if truth.lower().endswith(".csv"):
        return read_events(truth, ontology)
    try:
        library = read_subtitle_library(truth, ontology, mapping_uri=subtitle_map)
    except ValueError as exc:
        raise RunEvaluationError(f"--truth: {exc} (or an events .csv)") from None
    return library.requests, library.failures


def evaluate_run(
    run_out: str, truth: str, *, out_dir: str | None = None, caption_text: dict[str, str] | None = None,
    min_overlap_s: float = 0.5, ontology: Ontology | None = None, subtitle_map: str | None = None,
) -> dict:
    """Score a caption run's ``.vtt`` files against the truth (:func:`load_truth`); see the
    module docstring.

    With ``out_dir`` (local or s3://), writes ``report.json``, the PNG plots and ``index.html``
    there; the report then also names them (``report_uri``, ``plots``: name → URI, ``page_uri``).
    """
    from sound_captions.caption.vocabulary import CaptionVocabulary

    ontology = ontology or Ontology.load()
    requests, truth_failures = load_truth(truth, ontology, subtitle_map)
    by_key = {_key(r.source): r for r in requests}
    if caption_text is None:
        caption_text = CaptionVocabulary.load().captions
    text_to_label = caption_classes(caption_text)
    captioned = captioned_videos(run_out)
    videos = [v for v in captioned if _key(v.input) in by_key]
    uncaptioned = sorted(r.source for key, r in by_key.items() if key not in {_key(v.input) for v in captioned})
    if not videos:
        raise RunEvaluationError(f"no captioned input of {run_out} has truth in {truth}")
    truth_classes = sorted({m for r in requests for m in r.labels})
    below = {t: ontology.descendants(t) if t in ontology.classes else {t} for t in truth_classes}
    unknown: Counter = Counter()
    true_sets, pred_sets, per_video = [], [], []
    timing = defaultdict(list)
    for video in videos:
        request = by_key[_key(video.input)]
        events = [(e.label, e.onset_ms, e.offset_ms) for e in request.events]
        n = max(video.n_seconds, -(-max(e.offset_ms for e in request.events) // 1000))
        # the truth closed upward too: a piano second is also a music second, when the truth names music
        t_sets = [
            {t for m in second_labels(events, float(k), min_overlap_s, truth_classes) for t in _implied(m, truth_classes, below)}
            for k in range(n)
        ]
        p_raw = caption_seconds(storage.read_text(video.vtt_uri), text_to_label, n, unknown)
        p_sets = [set().union(*(_implied(p, truth_classes, below) for p in s)) if s else set() for s in p_raw]
        true_sets += t_sets
        pred_sets += p_sets
        per_video.append({"input": video.input, "seconds": n})
        for label, onset_ms, offset_ms in events:  # timing of the caption run that meets each event
            runs = _runs(np.array([label in s for s in p_sets], dtype=bool))
            meeting = [(a, b) for a, b in runs if a * 1000 < offset_ms and onset_ms < b * 1000]
            if meeting:
                timing["onset"].append(abs(meeting[0][0] * 1000 - onset_ms) / 1000)
                timing["offset"].append(abs(meeting[-1][1] * 1000 - offset_ms) / 1000)
            timing["events"].append(bool(meeting))
    labels = sorted(set(truth_classes) | {m for s in pred_sets for m in s})
    y_true = np.array([[m in s for m in labels] for s in true_sets], dtype=bool).reshape(-1, len(labels))
    y_pred = np.array([[m in s for m in labels] for s in pred_sets], dtype=bool).reshape(-1, len(labels))
    metrics = segment_metrics(y_true, y_pred, labels)
    silent = ~y_true.any(axis=1)
    false_in_silence = int((silent & y_pred.any(axis=1)).sum())
    confusion = Counter()
    for t_set, p_set in zip(true_sets, pred_sets, strict=True):
        for t in t_set - p_set:
            for q in p_set - t_set:
                confusion[(t, q)] += 1
    report = {
        "format": REPORT_FORMAT,
        "run": run_out,
        "truth": truth,
        "min_overlap_s": min_overlap_s,
        "videos": per_video,
        "n_seconds": int(len(true_sets)),
        "overall": metrics["overall"],
        "macro": metrics["macro"],
        "class_wise": {m: {**v, "name": ontology.name(m) if m in ontology.classes else m} for m, v in metrics["class_wise"].items()},
        "silent_seconds": int(silent.sum()),
        "false_caption_seconds_in_silence": false_in_silence,
        "false_caption_seconds_per_hour_of_silence": (false_in_silence / (silent.sum() / 3600)) if silent.any() else None,
        "events": len(timing["events"]),
        "events_captioned": int(sum(timing["events"])),
        "onset_error_s": {"mean": float(np.mean(timing["onset"])), "median": float(np.median(timing["onset"]))} if timing["onset"] else None,
        "offset_error_s": {"mean": float(np.mean(timing["offset"])), "median": float(np.median(timing["offset"]))} if timing["offset"] else None,
        "confusion": [{"truth": t, "captioned": q, "seconds": n} for (t, q), n in confusion.most_common()],
        "unknown_caption_texts": dict(unknown.most_common()),
        "truth_without_captions": uncaptioned,
        "truth_failures": [{"item": f.item, "reason": f.reason, "message": f.message} for f in truth_failures],
    }
    if out_dir:
        from sound_captions.evaluate_run_page import write_run_page

        report["plots"], report["page_uri"] = write_run_page(report, out_dir)
        report["report_uri"] = storage.join(out_dir, REPORT_NAME)
        storage.write_text(report["report_uri"], json.dumps(json_safe(report), indent=2, allow_nan=False))
    return report


def summary_text(report: dict) -> str:
    o = report["overall"]
    lines = [
        f"{len(report['videos'])} videos, {report['n_seconds']} s judged per second",
        f"micro  P {o['precision']:.3f}  R {o['recall']:.3f}  F1 {o['f_measure']:.3f}  ER {o['error_rate']:.3f}",
        f"macro  F1 {report['macro']['f_measure']:.3f}",
        f"false captions in silence: {report['false_caption_seconds_in_silence']} of {report['silent_seconds']} silent s"
        + (f" ({report['false_caption_seconds_per_hour_of_silence']:.0f} per hour)" if report["false_caption_seconds_per_hour_of_silence"] is not None else ""),
        f"events captioned: {report['events_captioned']} of {report['events']}"
        + (f"; onset error mean {report['onset_error_s']['mean']:.2f} s, offset {report['offset_error_s']['mean']:.2f} s" if report["onset_error_s"] else ""),
    ]
    if report["unknown_caption_texts"]:
        lines.append("caption texts of no known class: " + ", ".join(f"{t} ×{n}" for t, n in report["unknown_caption_texts"].items()))
    return "\n".join(lines) + "\n"
