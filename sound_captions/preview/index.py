"""Caption run report → an index page listing every video with its status and preview link.

``write_run_index`` renders the table from the run report (``<out>/_report/report.parquet`` or
its rows as dicts); ``write_run_previews`` makes a preview page for every captioned video of a
run and then the index.
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
import urllib.parse
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from sound_captions.paths import join_inside
from sound_captions.preview import media as media_mod
from sound_captions.preview.page import Transcode, read_uri_bytes, write_preview
from sound_captions.preview.timeline import DEFAULT_MAX_ROWS, PreviewInputError

log = logging.getLogger(__name__)

REPORT_REL = "_report/report.parquet"
#: What ``write_run_previews`` tolerates per video (listed in the index instead of raised):
#: unreadable/undecodable media, malformed captions or scores, missing or unreadable files
#: (StorageError is an OSError; pyarrow's ArrowInvalid is a ValueError).
PREVIEW_TOLERATED: tuple[type[BaseException], ...] = (
    media_mod.PreviewMediaError,
    PreviewInputError,
    OSError,
    ValueError,
)
STATUSES = ("captioned", "skipped", "failed")
_MID_RE = re.compile(r"^/[mtg]/[0-9a-z_]+$")


def read_report(report: str | os.PathLike | Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Run report rows as dicts, from a Parquet URI, a pyarrow Table or an iterable of dicts."""
    if isinstance(report, str | os.PathLike):
        import pyarrow as pa
        import pyarrow.parquet as pq

        return pq.read_table(pa.BufferReader(read_uri_bytes(report)), use_threads=False).to_pylist()
    if hasattr(report, "to_pylist"):
        return report.to_pylist()
    return [dict(row) for row in report]


def _display_labels(labels: Iterable[str] | None) -> list[str]:
    """Label display names; machine ids are looked up in the packaged ontology when it exists."""
    labels = [str(x) for x in (labels or [])]
    if not any(_MID_RE.match(x) for x in labels):
        return labels
    try:
        from sound_captions.ontology import Ontology

        onto = Ontology.load()
    except (ImportError, OSError, ValueError):  # names are a nicety here; mids still read
        return labels
    names = []
    for label in labels:
        try:
            names.append(onto.name(label) if _MID_RE.match(label) else label)
        except (KeyError, ValueError):  # UnknownLabelError is both
            names.append(label)
    return names


def _fmt_duration(seconds: Any) -> str:
    if seconds is None or seconds != seconds:  # None or NaN
        return ""
    total = round(float(seconds))
    h, m, s = total // 3600, total // 60 % 60, total % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _href(target: str | os.PathLike, base: Path) -> str:
    text = os.fspath(target)
    if "://" in text and not text.startswith("file://"):
        return text
    if text.startswith("file://"):
        text = urllib.parse.unquote(urllib.parse.urlparse(text).path)
    rel = os.path.relpath(Path(text).resolve(), base.resolve()).replace(os.sep, "/")
    return urllib.parse.quote(rel)


INDEX_CSS = """
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: #1d1d1f; background: #f6f6f8; }
main { max-width: 1200px; margin: 0 auto; padding: 14px 16px 24px; }
h1 { font-size: 18px; margin: 0 0 4px; }
.summary { color: #5f6368; margin: 0 0 10px; }
input[type=search] { width: 280px; padding: 4px 8px; margin-bottom: 8px; }
table { width: 100%; border-collapse: collapse; background: #fff; border: 1px solid #d9d9de; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid #ececf0; vertical-align: top; }
th { background: #f0f0f4; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.path { word-break: break-all; }
.status { display: inline-block; padding: 0 6px; border-radius: 8px; font-size: 12px; }
.status-captioned { background: #e6f4ea; color: #137333; }
.status-skipped { background: #e8f0fe; color: #1967d2; }
.status-failed { background: #fce8e6; color: #c5221f; }
.why { color: #5f6368; font-size: 12px; }
"""

INDEX_JS = r"""
(function () {
  const box = document.getElementById("filter");
  box.addEventListener("input", function () {
    const q = box.value.toLowerCase();
    for (const tr of document.querySelectorAll("#runs tbody tr")) {
      tr.hidden = q && !tr.textContent.toLowerCase().includes(q);
    }
  });
})();
"""


def write_run_index(
    report: str | os.PathLike | Iterable[Mapping[str, Any]],
    out_dir: str | os.PathLike,
    previews: Mapping[str, str | os.PathLike],
    *,
    preview_errors: Mapping[str, str] | None = None,
    title: str = "Sound captions run",
) -> Path:
    """Write ``<out_dir>/index.html``: one row per input of a caption run.

    Args:
        report: the run report (Parquet URI, Table or row dicts with ``input``, ``status``,
            ``reason``, ``message``, ``output_vtt``, ``duration_s``, ``cue_count``, ``top_labels``).
        out_dir: local folder for the index (created).
        previews: input URI → preview page path; links are made relative to ``out_dir``.
        preview_errors: input URI → why no preview could be made (shown in the row).
        title: page heading.

    Returns:
        The path of the index page.
    """
    rows = read_report(report)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    preview_errors = preview_errors or {}
    counts = Counter(str(row.get("status") or "unknown") for row in rows)

    body = []
    for row in sorted(rows, key=lambda r: str(r.get("input") or "")):
        source = str(row.get("input") or "")
        status = str(row.get("status") or "unknown")
        why = " — ".join(str(x) for x in (row.get("reason"), row.get("message")) if x)
        if source in preview_errors:
            why = (why + " — " if why else "") + f"no preview: {preview_errors[source]}"
        if source in previews:
            name_cell = (
                f'<a href="{html.escape(_href(previews[source], out))}">{html.escape(source)}</a>'
            )
        else:
            name_cell = html.escape(source)
        vtt = row.get("output_vtt")
        vtt_cell = (
            f'<a href="{html.escape(_href(vtt, out))}">vtt</a>'
            if vtt and status != "failed"
            else ""
        )
        cue_count = row.get("cue_count")
        body.append(
            "<tr>"
            f'<td class="path">{name_cell}</td>'
            f'<td><span class="status status-{html.escape(status)}">{html.escape(status)}</span>'
            + (f'<div class="why">{html.escape(why)}</div>' if why else "")
            + "</td>"
            f'<td class="num">{html.escape(_fmt_duration(row.get("duration_s")))}</td>'
            f'<td class="num">{"" if cue_count is None else int(cue_count)}</td>'
            f"<td>{html.escape('; '.join(_display_labels(row.get('top_labels'))))}</td>"
            f"<td>{vtt_cell}</td>"
            "</tr>"
        )
    summary = f"{len(rows)} video{'s' if len(rows) != 1 else ''}: " + ", ".join(
        f"{counts.get(s, 0)} {s}" for s in STATUSES
    )
    others = sorted(set(counts) - set(STATUSES))
    if others:
        summary += ", " + ", ".join(f"{counts[s]} {s}" for s in others)
    counts_json = json.dumps(dict(counts)).replace("<", "\\u003c")
    rows_html = "\n".join(body)
    page = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{INDEX_CSS}</style>
</head>
<body>
<main>
<h1>{html.escape(title)}</h1>
<p class="summary" id="summary">{html.escape(summary)}</p>
<input type="search" id="filter" placeholder="Filter videos, labels, reasons…" aria-label="Filter">
<table id="runs">
<thead><tr><th>Video</th><th>Status</th><th>Duration</th><th>Cues</th><th>Top labels</th><th>Captions</th></tr></thead>
<tbody>
{rows_html}
</tbody>
</table>
</main>
<script type="application/json" id="run-data">{counts_json}</script>
<script>{INDEX_JS}</script>
</body>
</html>
"""
    path = out / "index.html"
    media_mod.copy_bytes(page.encode("utf-8"), path)
    return path


def _scores_uri_for(vtt_uri: str) -> str | None:
    """``a/b/video.vtt`` → ``a/b/video.scores.parquet`` when that file exists."""
    if not vtt_uri.endswith(".vtt"):
        return None
    candidate = vtt_uri[: -len(".vtt")] + ".scores.parquet"
    if candidate.startswith("s3://"):
        from sound_captions.storage import exists

        return candidate if exists(candidate) else None
    local = (
        Path(urllib.parse.unquote(urllib.parse.urlparse(candidate).path))
        if candidate.startswith("file://")
        else Path(candidate)
    )
    return candidate if local.is_file() else None


def _relative_to_run(vtt_uri: str, run_uri: str) -> str:
    """The output's path under the run root (``a/b/video.vtt``), or its file name."""
    root = run_uri.rstrip("/") + "/"
    if vtt_uri.startswith(root):
        return vtt_uri[len(root) :]
    if "://" not in vtt_uri and "://" not in run_uri:
        try:
            return Path(vtt_uri).resolve().relative_to(Path(run_uri).resolve()).as_posix()
        except ValueError:
            pass
    return vtt_uri.rstrip("/").rsplit("/", 1)[-1]


def write_run_previews(
    run_uri: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    copy_video: bool = False,
    transcode: Transcode = "auto",
    max_rows: int = DEFAULT_MAX_ROWS,
) -> Path:
    """Preview every captioned video of a caption run and write the index page.

    Reads ``<run_uri>/_report/report.parquet``; for each row with captions, writes
    ``<out_dir>/<same relative path as its .vtt>.html`` (plus the video or its proxy beside it).
    Local videos are linked by relative path unless ``copy_video`` (copying a whole library
    doubles its size); s3 videos are always fetched. A video whose preview fails is listed with
    the reason instead of stopping the run.

    Returns:
        The path of ``<out_dir>/index.html``.
    """
    run_uri = os.fspath(run_uri)
    rows = read_report(run_uri.rstrip("/") + "/" + REPORT_REL)
    out = Path(out_dir)
    previews: dict[str, Path] = {}
    errors: dict[str, str] = {}
    for row in rows:
        vtt = row.get("output_vtt")
        if row.get("status") == "failed" or not vtt:
            continue
        rel = _relative_to_run(str(vtt), run_uri)
        try:
            # the report's path is checked, not trusted: a page never lands outside out_dir
            page = Path(join_inside(out, str(PurePosixPath(rel).with_suffix(".html"))))
            previews[row["input"]] = write_preview(
                row["input"],
                vtt,
                page.parent,
                scores_uri=_scores_uri_for(str(vtt)),
                copy_video=copy_video,
                transcode=transcode,
                max_rows=max_rows,
                page_name=page.name,
                title=str(row["input"]),
            )
        except PREVIEW_TOLERATED as exc:  # one bad video must not hide the rest of the run
            log.warning("no preview for %s: %s", row["input"], exc)
            errors[row["input"]] = (
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            )
    return write_run_index(
        rows, out, previews, preview_errors=errors, title=f"Sound captions: {run_uri}"
    )
