"""An evaluation report's figures → PNGs: training curves, precision-recall curves, F1 per
label and the label-confusion matrix (``evaluate --out``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sound_captions import storage
from sound_captions.bundle import ModelBundle
from sound_captions.metrics import average_precision
from sound_captions.plots import new_figure, save_png

PLOT_NAMES = ("training_curves", "pr_curves", "f1_per_label", "label_confusion")
MAX_PR_CURVES = 10  # labels drawn in pr_curves.png (most reference windows first)
MAX_BAR_LABELS = 40  # labels drawn in f1_per_label.png
MAX_CONFUSION_LABELS = 25  # labels in label_confusion.png and the report's matrix


def labels_by_support(segment: dict, labels: Sequence[str], limit: int) -> list[str]:
    """Up to ``limit`` labels, most reference windows first (then most detections), stable."""
    cw = segment["class_wise"]
    ranked = sorted(labels, key=lambda m: (-cw[m]["n_ref"], -cw[m]["n_sys"]))
    return ranked[:limit]


def short(name: str, width: int = 28) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def _pr_curve(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall at every distinct score (descending), predicting ``score >= s``.

    Unlike sklearn's curve this one goes on past full recall down to the lowest score, so
    every threshold (the bundle's included) lies on it.
    """
    order = np.argsort(-scores, kind="mergesort")
    s, hits = scores[order], y_true[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tps = np.cumsum(hits)[last]
    precision = tps / (last + 1)
    recall = tps / max(int(hits.sum()), 1)
    return np.r_[precision[0], precision], np.r_[0.0, recall]


def plot_training_curves(bundle: ModelBundle, uri: str) -> str:
    history = [h for h in bundle.metrics.get("history", []) or [] if "epoch" in h]
    fig = new_figure(10, 4)
    loss_ax, map_ax = fig.subplots(1, 2)
    if not history:
        for ax in (loss_ax, map_ax):
            ax.set_axis_off()
        fig.suptitle("Training curves")
        fig.text(
            0.5,
            0.5,
            "no training history recorded in this model bundle",
            ha="center",
            va="center",
            fontsize=13,
        )
        return save_png(fig, uri)
    epochs = [int(h["epoch"]) for h in history]
    losses = [float(h.get("train_loss", float("nan"))) for h in history]
    maps = [
        float(h["valid_map"]) if h.get("valid_map") is not None else float("nan") for h in history
    ]
    loss_ax.plot(epochs, losses, marker="o", color="tab:blue")
    loss_ax.set(title="Training loss", xlabel="epoch", ylabel="loss (BCE)")
    map_ax.plot(epochs, maps, marker="o", color="tab:green")
    map_ax.set(title="Validation mAP", xlabel="epoch", ylabel="mAP", ylim=(0, 1.02))
    best = bundle.metrics.get("best_epoch")
    if best is not None and int(best) in epochs:
        k = epochs.index(int(best))
        map_ax.plot(
            [epochs[k]],
            [maps[k]],
            marker="*",
            markersize=16,
            color="tab:red",
            linestyle="none",
            label=f"best (epoch {best})",
        )
        map_ax.legend(loc="lower right")
    for ax in (loss_ax, map_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(f"Training curves — {bundle.architecture}")
    return save_png(fig, uri)


def plot_pr_curves(report: dict, y_true: np.ndarray, scores: np.ndarray, uri: str) -> str:
    labels, names = report["labels"], report["label_names"]
    with_positives = [
        m
        for m in labels_by_support(report["segment"], labels, len(labels))
        if report["segment"]["class_wise"][m]["n_ref"] > 0
    ]
    shown = with_positives[:MAX_PR_CURVES]
    fig = new_figure(11, 6.5)
    ax = fig.subplots()
    colours = [f"C{k}" for k in range(10)]
    for k, mid in enumerate(shown):
        j = labels.index(mid)
        precision, recall = _pr_curve(y_true[:, j], scores[:, j].astype(np.float64))
        colour = colours[k % 10]
        ax.step(
            recall,
            precision,
            where="post",
            color=colour,
            label=f"{short(names[mid])} (AP {report['average_precision'][mid]:.2f})",
        )
        fires = scores[:, j] >= report["thresholds"][mid]
        if fires.any():
            p = float(y_true[fires, j].mean())
            r = float(y_true[fires, j].sum() / y_true[:, j].sum())
            ax.plot([r], [p], marker="o", markersize=7, color=colour, markeredgecolor="black")
    if y_true.any():
        precision, recall = _pr_curve(y_true.ravel(), scores.ravel().astype(np.float64))
        micro_ap = average_precision(y_true.ravel(), scores.ravel())
        ax.step(
            recall,
            precision,
            where="post",
            color="black",
            linestyle="--",
            linewidth=2,
            label=f"all labels pooled (AP {micro_ap:.2f})",
        )
    else:
        ax.text(
            0.5,
            0.5,
            "no positive windows in this split",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.01), ylim=(0, 1.02))
    subset = (
        f"{len(shown)} of {len(labels)} labels, most frequent"
        if len(shown) < len(labels)
        else f"{len(labels)} labels"
    )
    ax.set_title(
        f"Precision–recall per 1-s window ({subset}, mAP {report['map']:.2f})\ndots: the bundle's thresholds"
    )
    ax.grid(alpha=0.3)
    if shown or y_true.any():
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    return save_png(fig, uri)


def plot_f1_per_label(report: dict, uri: str) -> str:
    labels, names, cw = report["labels"], report["label_names"], report["segment"]["class_wise"]
    active = [m for m in labels if cw[m]["n_ref"] > 0 or cw[m]["n_sys"] > 0]
    shown = labels_by_support(report["segment"], active, MAX_BAR_LABELS)

    def f1(mid: str) -> float:
        value = cw[mid]["f_measure"]
        return 0.0 if value != value else value  # NaN (never predicted / never present) → 0

    shown.sort(key=lambda m: (-f1(m), m))
    fig = new_figure(9, max(4.0, 1.4 + 0.32 * len(shown)))
    ax = fig.subplots()
    if not shown:
        ax.set_axis_off()
        ax.text(
            0.5, 0.5, "no label is present or predicted in this split", ha="center", va="center"
        )
    else:
        ypos = np.arange(len(shown))
        ax.barh(ypos, [f1(m) for m in shown], color="tab:blue")
        ax.set_yticks(ypos, [short(names[m], 36) for m in shown])
        ax.invert_yaxis()
        for y, mid in zip(ypos, shown, strict=True):
            c = cw[mid]
            if c["n_sys"] == 0:
                note = f"never predicted (n={c['n_ref']})"
            elif c["n_ref"] == 0:
                note = f"not in reference ({c['n_sys']} false alarms)"
            else:
                note = f"{f1(mid):.2f} (n={c['n_ref']})"
            ax.text(min(f1(mid), 1.0) + 0.01, y, note, va="center", fontsize=8)
        ax.set_xlim(0, 1.35)
        ax.set_xticks(np.linspace(0, 1, 6))
        ax.grid(axis="x", alpha=0.3)
    micro = report["summary"]["micro_f1"]
    ax.set_xlabel("segment-based F1 (1-s windows)")
    subset = "" if len(shown) == len(active) else f", {len(shown)} of {len(active)} labels"
    ax.set_title(f"F1 per label at the bundle's thresholds (micro F1 {micro:.2f}{subset})")
    return save_png(fig, uri)


def log_count_ticks(peak: int) -> list[int]:
    steps = [0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 100000, 1000000]
    return [v for v in steps if v <= max(peak, 1)]


def draw_counts(
    ax, matrix: np.ndarray, rows: list[str], cols: list[str], title: str, annotate: bool
):
    image = ax.imshow(np.log1p(matrix), cmap="Blues", aspect="equal", vmin=0.0)
    ax.set_xticks(np.arange(len(cols)), cols, rotation=90)
    ax.set_yticks(np.arange(len(rows)), rows)
    ax.set_xlabel("predicted label (fires)")
    ax.set_title(title)
    if annotate:
        peak = max(float(np.log1p(matrix).max()), 1e-9)
        for (r, c), count in np.ndenumerate(matrix):
            if count:
                dark = np.log1p(count) > 0.6 * peak
                ax.text(
                    c,
                    r,
                    str(count),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if dark else "black",
                )
    return image


def plot_label_confusion(report: dict, uri: str) -> str:
    """Two panels: all detections per true label, and only the false alarms per true label."""
    conf = report["label_confusion"]
    shown, names = conf["labels"], report["label_names"]
    n = len(shown)
    everything = np.zeros((n + 1, n + 1), dtype=np.int64)
    everything[:n, :n] = np.asarray(conf["matrix"], dtype=np.int64).reshape(n, n)
    everything[:n, n] = conf["none_predicted"]
    everything[n, :n] = conf["no_reference"]
    false_alarms = np.zeros((n + 1, n), dtype=np.int64)
    false_alarms[:n, :] = np.asarray(conf["false_alarms"], dtype=np.int64).reshape(n, n)
    false_alarms[n, :] = conf["no_reference"]
    rows = [short(names[m]) for m in shown] + ["(no reference label)"]
    cols = [short(names[m]) for m in shown]
    panel_in = max(3.2, 0.4 * (n + 1))
    fig = new_figure(2.4 + 2 * panel_in + 1.8, panel_in + 4.6)
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [n + 1, max(n, 1)]})
    annotate = n <= 20
    draw_counts(
        left, everything, rows, [*cols, "(nothing predicted)"], "every detection", annotate
    )
    left.set_ylabel("true label (in reference)")
    image = draw_counts(
        right,
        false_alarms,
        rows,
        cols,
        "false alarms only\n(predicted label not in reference)",
        annotate,
    )
    right.set_yticks(np.arange(n + 1), [""] * (n + 1))
    ceiling = max(float(np.log1p(everything.max())), 1e-9)
    for ax in (left, right):
        ax.images[0].set_clim(0.0, ceiling)
    colorbar = fig.colorbar(image, ax=[left, right], shrink=0.6)
    colorbar.set_label("windows (log scale)")
    ticks = log_count_ticks(int(everything.max()))
    colorbar.set_ticks(np.log1p(ticks), labels=[str(v) for v in ticks])
    subset = (
        ""
        if n == len(report["labels"])
        else f", {n} most frequent of {len(report['labels'])} labels"
    )
    fig.suptitle(
        f"Label confusion per 1-s window{subset}\nrow: label in the reference; column: label the model fires"
    )
    return save_png(fig, uri)


def write_plots(
    report: dict, bundle: ModelBundle, y_true: np.ndarray, scores: np.ndarray, out_dir: str
) -> dict[str, str]:
    """Write the four PNG plots to ``out_dir``; returns plot name → URI."""
    uri = {name: storage.join(out_dir, f"{name}.png") for name in PLOT_NAMES}
    return {
        "training_curves": plot_training_curves(bundle, uri["training_curves"]),
        "pr_curves": plot_pr_curves(report, y_true, scores, uri["pr_curves"]),
        "f1_per_label": plot_f1_per_label(report, uri["f1_per_label"]),
        "label_confusion": plot_label_confusion(report, uri["label_confusion"]),
    }
