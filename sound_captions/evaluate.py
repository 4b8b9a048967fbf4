"""Model bundle + dataset shards → evaluation report (JSON) and plots (PNG).

``score_dataset`` runs the bundle's model over the 1-s windows of one split of a dataset and
returns the reference roll and the scores; ``evaluate`` turns them into the report:

- per-second (1-s segment) precision, recall, F1 and error rate per label, micro ("overall")
  and macro, as sed_eval's ``SegmentBasedMetrics`` defines them (``metrics.segment_metrics``),
  with a label active when its score reaches the bundle's threshold (``score >= threshold``);
- average precision per label and mAP (labels without positives have no AP and are skipped);
- the label-confusion counts: for true label a and predicted label b, the windows where a is
  in the reference and b fires;
- and, given ``out_dir``, ``report.json`` and the plots ``training_curves.png``,
  ``pr_curves.png``, ``f1_per_label.png``, ``label_confusion.png``.

Label mapping: the report is in the bundle's label order. A dataset label the bundle does not
know is ignored; a bundle label missing from the dataset's vocabulary has no reference activity
(all false: its AP is NaN, each of its detections counts as an insertion); such labels are listed
under ``labels_missing_from_dataset`` because the data was never annotated for them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from sound_captions import __version__, storage
from sound_captions.bundle import ModelBundle, load_bundle
from sound_captions.context import (
    neighbour_index,
    per_second_outputs,
    score_embeddings,
    silence_embedding,
)
from sound_captions.dataset import shards
from sound_captions.evaluate_plots import MAX_CONFUSION_LABELS, labels_by_support, write_plots
from sound_captions.features import to_model_input
from sound_captions.metrics import average_precision, json_safe, mean_average_precision, segment_metrics

REPORT_FORMAT = "sound-captions/evaluation/1"
REPORT_NAME = "report.json"
META_COLUMNS = ("clip_id", "source", "second", "start_s", "split")



class NoEvaluationDataError(ValueError):
    """The dataset has no window in the requested split."""


def _multi_hot(label_lists: Sequence, labels: Sequence[str]) -> np.ndarray:
    """Rows of label mids → (n, L) bool in ``labels`` order (mids not in ``labels`` ignored)."""
    index = {mid: j for j, mid in enumerate(labels)}
    out = np.zeros((len(label_lists), len(labels)), dtype=bool)
    for row, mids in enumerate(label_lists):
        for mid in mids or ():
            j = index.get(mid)
            if j is not None:
                out[row, j] = True
    return out


def score_dataset(
    bundle: ModelBundle,
    data_uri: str,
    split: str | None = "test",
    batch_size: int = 128,
    *,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, np.ndarray, pa.Table]:
    """Scores of the bundle's model for every window of one split of a dataset.

    Args:
        bundle: the model.
        data_uri: dataset root (local or s3://) holding ``dataset.json`` and the shards it lists.
        split: rows whose ``split`` column equals this; ``None`` takes every row.
        batch_size: windows per forward pass.
        device: where the model runs.

    Returns:
        ``y_true`` (n, L) bool and ``scores`` (n, L) float32 sigmoid probabilities, both in
        ``bundle.labels`` order, and the rows' metadata: a table with columns ``clip_id``,
        ``source``, ``second``, ``start_s``, ``split`` (n rows, the same order).

    Raises:
        shards.NotADatasetError: no ``dataset.json`` at ``data_uri``.
        FeatureConfigMismatchError: the dataset (or one of its shards) was made with other
            features than the bundle's model.
        NoEvaluationDataError: no window of ``split``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    info = shards.load_dataset_info(data_uri)
    bundle.feature_config.check(info.feature_config.hash, f"dataset {data_uri}")
    model = bundle.build_model().to(device)
    context = bundle.context
    y_parts, score_parts, meta_parts, augment_parts = [], [], [], []
    for uri in shards.shard_uris(data_uri, info):
        table = shards.read_table(uri)
        if split is not None:
            table = table.filter(pc.equal(table.column("split"), split))
        if table.num_rows == 0:
            continue
        for shard_hash in pc.unique(table.column("feature_hash")).to_pylist():
            bundle.feature_config.check(shard_hash, f"shard {uri}")
        spec = shards.spectrograms(table)
        with torch.no_grad():
            for start in range(0, spec.shape[0], batch_size):
                # astype copies the read-only Arrow-backed view into a writable float32 array
                x = to_model_input(spec[start : start + batch_size].astype(np.float32)).to(device)
                # a context model: embeddings now, scores once every neighbour is known
                out = per_second_outputs(model, x, context)
                score_parts.append(out.float().cpu().numpy())
        y_parts.append(_multi_hot(table.column("labels").to_pylist(), bundle.labels))
        meta_parts.append(table.select(list(META_COLUMNS)))
        if context:
            augment_parts.append(table.column("augment"))
    if not score_parts:
        which = "any split" if split is None else f"split {split!r}"
        raise NoEvaluationDataError(f"{data_uri}: no windows of {which}")
    meta = pa.concat_tables(meta_parts)
    scores = np.concatenate(score_parts).astype(np.float32)
    if context:  # neighbours may lie in another shard: index the whole split at once
        index = neighbour_index(
            meta.column("clip_id").to_pylist(), pa.chunked_array(augment_parts).to_pylist(),
            meta.column("start_s").to_numpy(), context,
        )
        silence = silence_embedding(model, bundle.feature_config, device)
        scores = score_embeddings(model, torch.as_tensor(scores, device=device), index, silence, batch_size)
    return np.concatenate(y_parts), scores, meta


def label_confusion(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, np.ndarray]:
    """Co-occurrence counts of reference and system labels over windows.

    Returns:
        ``matrix`` (L, L) int64: [a, b] = windows where a is in the reference and b fires
        (the diagonal holds the true positives; with multi-label windows the off-diagonal
        also counts labels that truly co-occur); ``false_alarms`` (L, L): the same, counting
        only windows where b is not in the reference (which true sounds b's false alarms
        fire on; zero diagonal); ``none_predicted`` (L,): windows where a is in the reference
        and no label fires; ``no_reference`` (L,): windows with an empty reference where b
        fires.
    """
    t = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(y_pred, dtype=np.int64)
    silent = p.sum(axis=1) == 0
    empty = t.sum(axis=1) == 0
    return {
        "matrix": t.T @ p,
        "false_alarms": t.T @ (p * (1 - t)),
        "none_predicted": t[silent].sum(axis=0),
        "no_reference": p[empty].sum(axis=0),
    }


def evaluate(
    bundle: ModelBundle | str,
    data_uri: str,
    *,
    split: str | None = "test",
    out_dir: str | None = None,
    batch_size: int = 128,
    device: str | torch.device = "cpu",
) -> dict:
    """Evaluate a model bundle on one split of a dataset; optionally write the report and plots.

    Args:
        bundle: a ``ModelBundle`` or the URI of one.
        data_uri: dataset root (see ``score_dataset``).
        split: the split evaluated (``None``: all rows).
        out_dir: if given (local or s3://), ``report.json`` and the four PNG plots go there.
        batch_size, device: see ``score_dataset``.

    Returns:
        The report (Python floats; NaN where sed_eval's conventions give NaN — ``report.json``
        writes those as ``null``): ``summary`` (micro/macro F1 and ER, mAP), ``segment`` (the
        full ``segment_metrics`` result keyed by label mid), ``average_precision`` (mid → AP),
        ``map``, ``thresholds``, ``label_confusion``, ``model``/``data`` (URIs and digests),
        ``n_windows``, and with ``out_dir`` also ``plots`` (name → URI) and ``report_uri``.
    """
    bundle_uri = bundle if isinstance(bundle, str) else None
    if isinstance(bundle, str):
        bundle = load_bundle(bundle)
    y_true, scores, _ = score_dataset(bundle, data_uri, split, batch_size, device=device)
    labels = list(bundle.labels)
    thresholds = {mid: float(bundle.thresholds.get(mid, 0.5)) for mid in labels}
    y_pred = scores >= np.array([thresholds[mid] for mid in labels], dtype=np.float32)
    segment = segment_metrics(y_true, y_pred, labels)
    ap = average_precision(y_true, scores)
    mean_ap = mean_average_precision(y_true, scores)
    vocabulary = shards.load_dataset_info(data_uri).vocabulary
    confusion = label_confusion(y_true, y_pred)
    shown = labels_by_support(segment, labels, MAX_CONFUSION_LABELS)
    idx = [labels.index(mid) for mid in shown]
    report = {
        "format": REPORT_FORMAT,
        "tool_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": {
            "uri": bundle_uri,
            "digest": bundle.digest(),
            "architecture": bundle.architecture,
            "training_dataset_digest": bundle.dataset_digest,
            "feature_hash": bundle.feature_hash,
        },
        "data": {"uri": data_uri, "digest": shards.dataset_digest(data_uri), "split": split},
        "n_windows": int(y_true.shape[0]),
        "labels": labels,
        "label_names": {mid: bundle.label_names.get(mid, mid) for mid in labels},
        "labels_missing_from_dataset": [mid for mid in labels if mid not in vocabulary],
        "thresholds": thresholds,
        "summary": {
            "micro_f1": segment["overall"]["f_measure"],
            "micro_error_rate": segment["overall"]["error_rate"],
            "macro_f1": segment["macro"]["f_measure"],
            "macro_present_f1": segment["macro_present"]["f_measure"],
            "map": mean_ap,
        },
        "segment": segment,
        "average_precision": {mid: float(ap[j]) for j, mid in enumerate(labels)},
        "map": mean_ap,
        "label_confusion": {
            "labels": shown,
            "matrix": confusion["matrix"][np.ix_(idx, idx)].tolist(),
            "false_alarms": confusion["false_alarms"][np.ix_(idx, idx)].tolist(),
            "none_predicted": confusion["none_predicted"][idx].tolist(),
            "no_reference": confusion["no_reference"][idx].tolist(),
        },
    }
    if out_dir is not None:
        report["plots"] = write_plots(report, bundle, y_true, scores, out_dir)
        report["report_uri"] = storage.join(out_dir, REPORT_NAME)
        storage.write_text(
            report["report_uri"], json.dumps(json_safe(report), indent=2, allow_nan=False)
        )
    return report
