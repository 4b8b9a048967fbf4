"""A run evaluation's report (``evaluate_run``) → PNG plots and a self-contained ``index.html``.

    report["class_wise"] ─► f1_per_class.png (per-second P/R/F1 per class, most truth seconds first)
    report["confusion"]  ─► confusion.png (truth class × captioned class, seconds)
    report + the PNGs    ─► index.html (headline figures and tables; the PNGs inline as data: URLs)

Only formatting happens here; every figure is computed in ``evaluate_run``. Every text taken
from the run, the truth or the captions goes through ``html.escape``; the page has no script
and loads nothing.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Collection

import numpy as np

from sound_captions import storage
from sound_captions.evaluate_plots import MAX_BAR_LABELS, MAX_CONFUSION_LABELS, draw_counts, labels_by_support, log_count_ticks, short
from sound_captions.plots import new_figure, save_png

PLOT_NAMES = ("f1_per_class", "confusion")
PAGE_NAME = "index.html"
MAX_CONFUSION_ROWS = 20  # confusions listed on the page (most seconds first)
PAGE_CSS = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 0; color: #1b1b1b; background: #fafafa; }
main { max-width: 72rem; margin: 0 auto; padding: 1.5rem; }
h2 { margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5rem 0; }
th, td { padding: 0.25rem 0.7rem; border-bottom: 1px solid #e4e4e4; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.mid { color: #777; font-size: 0.85em; }
.none { color: #777; font-style: italic; }
.paths code { word-break: break-all; }
figure { margin: 1rem 0; }
img { max-width: 100%; height: auto; border: 1px solid #e4e4e4; background: #fff; }
"""


def _f(value: float | None, digits: int = 3) -> str:
    """A figure as the page and the plots print it; ``—`` for none (``null`` or NaN)."""
    return "—" if value is None or value != value else f"{value:.{digits}f}"


def _zero_nan(value: float) -> float:
    return 0.0 if value != value else value


def classes_by_support(report: dict) -> list[str]:
    """The classes present in the truth or in the captions, most truth seconds first."""
    cw = report["class_wise"]
    return labels_by_support(report, [m for m in cw if cw[m]["n_ref"] or cw[m]["n_sys"]], len(cw))


def plot_prf_per_class(report: dict, uri: str) -> str:
    """Per-second precision, recall and F1 bars per class (up to ``MAX_BAR_LABELS``)."""
    cw = report["class_wise"]
    active = classes_by_support(report)
    shown = active[:MAX_BAR_LABELS]
    fig = new_figure(9, max(4.0, 1.4 + 0.55 * len(shown)))
    ax = fig.subplots()
    if not shown:
        ax.set_axis_off()
        ax.text(0.5, 0.5, "no class sounds in the truth or is captioned", ha="center", va="center")
    else:
        ypos = np.arange(len(shown))
        for k, (key, colour) in enumerate((("precision", "tab:orange"), ("recall", "tab:green"), ("f_measure", "tab:blue"))):
            ax.barh(ypos + (k - 1) * 0.27, [_zero_nan(cw[m][key]) for m in shown], height=0.27, color=colour,
                    label={"f_measure": "F1"}.get(key, key))
        ax.set_yticks(ypos, [short(cw[m]["name"], 36) for m in shown])
        ax.invert_yaxis()
        for y, mid in zip(ypos, shown, strict=True):
            c = cw[mid]
            if c["n_sys"] == 0:
                note = f"never captioned (truth {c['n_ref']} s)"
            elif c["n_ref"] == 0:
                note = f"not in the truth ({c['n_sys']} false s)"
            else:
                note = f"F1 {_f(c['f_measure'], 2)} (truth {c['n_ref']} s)"
            ax.text(1.02, y, note, va="center", fontsize=8)
        ax.set_xlim(0, 1.45)
        ax.set_xticks(np.linspace(0, 1, 6))
        ax.grid(axis="x", alpha=0.3)
        fig.legend(loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    ax.set_xlabel("per second (1-s segments)")
    subset = "" if len(shown) == len(active) else f", {len(shown)} of {len(active)} classes"
    ax.set_title(f"Captions vs truth per class (micro F1 {_f(report['overall']['f_measure'], 2)}{subset})")
    return save_png(fig, uri)


def plot_run_confusion(report: dict, uri: str) -> str:
    """Seconds a truth class was missed while another class was captioned (rows: truth class,
    columns: captioned class; up to ``MAX_CONFUSION_LABELS`` each, most seconds first)."""
    names = {m: v["name"] for m, v in report["class_wise"].items()}
    seconds: dict[tuple[str, str], int] = {(c["truth"], c["captioned"]): c["seconds"] for c in report["confusion"]}

    def ranked(side: int) -> list[str]:
        total: dict[str, int] = {}
        for pair, n in seconds.items():
            total[pair[side]] = total.get(pair[side], 0) + n
        return sorted(total, key=lambda m: (-total[m], m))[:MAX_CONFUSION_LABELS]

    rows, cols = ranked(0), ranked(1)
    if not rows:
        fig = new_figure(7, 2.5)
        ax = fig.subplots()
        ax.set_axis_off()
        ax.text(0.5, 0.5, "no confusion: no truth second was captioned as another class", ha="center", va="center")
        ax.set_title("Confusions per second")
        return save_png(fig, uri)
    matrix = np.array([[seconds.get((t, q), 0) for q in cols] for t in rows], dtype=np.int64)
    fig = new_figure(max(6.5, 4.6 + 0.4 * len(cols)), 3.6 + 0.4 * len(rows))
    ax = fig.subplots()
    image = draw_counts(ax, matrix, [short(names.get(m, m)) for m in rows], [short(names.get(m, m)) for m in cols],
                         "Confusions per second\nrow: truth class missed, column: captioned instead", len(rows) <= 20)
    ax.set_xlabel("captioned class")
    ax.set_ylabel("truth class")
    colorbar = fig.colorbar(image, ax=ax, shrink=0.6)
    colorbar.set_label("seconds (log scale)")
    ticks = log_count_ticks(int(matrix.max()))
    colorbar.set_ticks(np.log1p(ticks), labels=[str(v) for v in ticks])
    return save_png(fig, uri)


def _table(head: list[str], rows: list[list[str]], empty: str, numeric: Collection[int] = ()) -> str:
    """An HTML table of already-escaped cells; ``empty`` (plain text) when there are no rows."""
    if not rows:
        return f'<p class="none">{html.escape(empty)}</p>'
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "\n".join(
        "<tr>" + "".join(f'<td class="num">{c}</td>' if k in numeric else f"<td>{c}</td>" for k, c in enumerate(r)) + "</tr>"
        for r in rows
    )
    return f"<table>\n<thead><tr>{th}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def _headline(r: dict) -> list[list[str]]:
    """The headline figures of report ``r``: (name, value) rows, escaped."""
    per_hour = r["false_caption_seconds_per_hour_of_silence"]
    timing = [
        (f"{name} error (mean / median)", f"{_f(r[key]['mean'], 2)} s / {_f(r[key]['median'], 2)} s" if r[key] else "—")
        for name, key in (("onset", "onset_error_s"), ("offset", "offset_error_s"))
    ]
    rows = [
        ("videos judged", f"{len(r['videos'])} ({r['n_seconds']} s)"),
        ("micro precision", _f(r["overall"]["precision"])),
        ("micro recall", _f(r["overall"]["recall"])),
        ("micro F1", _f(r["overall"]["f_measure"])),
        ("micro error rate", _f(r["overall"]["error_rate"])),
        ("macro F1", _f(r["macro"]["f_measure"])),
        ("false caption-seconds in silence", f"{r['false_caption_seconds_in_silence']} of {r['silent_seconds']} silent s"),
        ("false caption-seconds per hour of silence", "—" if per_hour is None else f"{per_hour:.0f}"),
        ("events captioned", f"{r['events_captioned']} of {r['events']}"),
        *timing,
    ]
    return [[html.escape(k), html.escape(v)] for k, v in rows]


def render_page(report: dict, png_data: dict[str, bytes]) -> str:
    """The page's HTML: the report's figures and tables, the PNGs inline."""
    e = html.escape
    cw = report["class_wise"]
    names = {m: v["name"] for m, v in cw.items()}

    def cls(mid: str) -> str:
        return f'{e(names.get(mid, mid))} <span class="mid">{e(mid)}</span>'

    classes = [
        [e(cw[m]["name"]), f'<span class="mid">{e(m)}</span>', str(cw[m]["n_ref"]),
         _f(cw[m]["precision"]), _f(cw[m]["recall"]), _f(cw[m]["f_measure"])]
        for m in classes_by_support(report)
    ]
    confusion = [[cls(c["truth"]), cls(c["captioned"]), str(c["seconds"])] for c in report["confusion"][:MAX_CONFUSION_ROWS]]
    more = len(report["confusion"]) - MAX_CONFUSION_ROWS
    images = "\n".join(
        f'<figure><img alt="{e(name)}" src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}"></figure>'
        for name, data in png_data.items()
    )
    sections = [
        ("Per class", _table(["class", "mid", "truth seconds", "P", "R", "F1"], classes, "no class sounds or is captioned", {2, 3, 4, 5})),
        (f"Confusions (top {MAX_CONFUSION_ROWS})", _table(["truth class", "captioned instead", "seconds"], confusion,
                                                          "no truth second was captioned as another class", {2})
         + (f'<p class="none">and {more} more in report.json</p>' if more > 0 else "")),
        ("Videos", _table(["input", "seconds"], [[e(v["input"]), str(v["seconds"])] for v in report["videos"]], "none", {1})),
        ("Caption texts of no known class", _table(["caption text", "cues"], [[e(t), str(n)] for t, n in report["unknown_caption_texts"].items()], "none", {1})),
        ("Truth without captions", _table(["source"], [[e(s)] for s in report["truth_without_captions"]], "none")),
        ("Truth rows that could not be used", _table(["item", "reason", "message"], [[e(str(f["item"])), e(f["reason"]), e(f["message"])] for f in report["truth_failures"]], "none")),
    ]
    body = "\n".join(f"<h2>{e(title)}</h2>\n{content}" for title, content in sections)
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Caption run evaluation</title>
<style>{PAGE_CSS}</style>
</head>
<body>
<main>
<h1>Caption run evaluation</h1>
<p class="paths">run <code>{e(report["run"])}</code><br>truth <code>{e(report["truth"])}</code><br>
a truth class is on in a second its events overlap by at least {e(str(report["min_overlap_s"]))} s</p>
{_table(["figure", "value"], _headline(report), "")}
{images}
{body}
</main>
</body>
</html>
"""


def write_run_page(report: dict, out_dir: str) -> tuple[dict[str, str], str]:
    """Write the PNG plots and ``index.html`` to ``out_dir`` (local or s3://); returns
    (plot name → URI, the page's URI)."""
    uri = {name: storage.join(out_dir, f"{name}.png") for name in PLOT_NAMES}
    plots = {
        "f1_per_class": plot_prf_per_class(report, uri["f1_per_class"]),
        "confusion": plot_run_confusion(report, uri["confusion"]),
    }
    page_uri = storage.join(out_dir, PAGE_NAME)
    storage.write_text(page_uri, render_page(report, {name: storage.read_bytes(u) for name, u in plots.items()}))
    return plots, page_uri
