"""Ranked clips → ``review.html``: one self-contained page (images and audio inline, no network)
where a reviewer looks at and listens to the most suspicious clips first, filters by label, and
downloads ``decisions.csv`` for ``dataset clean --apply``.

Each card: the clip's spectrogram (its own seconds side by side, low frequencies at the bottom),
an audio player of the clip (Opus in Ogg, cut from the source by ffmpeg; absent where the
source cannot be read here, e.g. a YouTube id), its labels, the suggested change, the scores,
and per second the out-of-fold score of each label it has or probably misses; with CLAP, its
zero-shot choice and the given labels' ranks, and its per-second probability of each given label.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import subprocess

import numpy as np

from sound_captions.clean.clap import ClapClip, clip_columns
from sound_captions.clean.suspicion import DROP, KEEP, RELABEL, ClipSuspicion

log = logging.getLogger(__name__)

OPUS_BITRATE = "24k"
#: a clip longer than this (a whole film labelled from its subtitles) shows its first seconds only
PAGE_MAX_SECONDS = 60


def spectrogram_png(spec: np.ndarray) -> bytes:
    """(n_seconds, H, W, C) windows of one clip → a PNG of the first channel, seconds side by
    side, low frequencies at the bottom, scaled to the clip's own range."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import image as mpl_image

    picture = np.concatenate(list(np.asarray(spec, dtype=np.float32)[..., 0]), axis=1)[::-1]
    lo, hi = np.percentile(picture, [1, 99.5]) if picture.size else (0.0, 1.0)
    picture = np.clip((picture - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    buffer = io.BytesIO()
    mpl_image.imsave(buffer, picture, cmap="magma", vmin=0.0, vmax=1.0, format="png")
    return buffer.getvalue()


def clip_audio(source: str, start_s: float, seconds: float) -> bytes:
    """The clip as Opus in Ogg (mono, 24 kb/s) from its source; raises on any failure."""
    from sound_captions.audio import _input_for, ffmpeg_exe

    cmd = [
        ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-ss", f"{max(start_s, 0.0):.3f}",
        "-t", f"{seconds:.3f}", "-i", _input_for(source), "-vn", "-ac", "1", "-c:a", "libopus", "-b:a", OPUS_BITRATE,
        "-f", "ogg", "pipe:",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, check=False, timeout=120)
    if proc.returncode != 0 or not proc.stdout:
        raise RuntimeError(proc.stderr.decode("utf-8", "replace").strip()[-300:] or "no audio")
    return proc.stdout


def _data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def _names(mids, names: dict[str, str]) -> str:
    return "; ".join(names.get(m, m) for m in mids)


def _second_strip(clip: ClipSuspicion, labels: list[str], names: dict[str, str], clap: ClapClip | None) -> str:
    """Per second, the out-of-fold score of each label the clip has or probably misses, and
    (orange) CLAP's probability of each label it has."""
    index = {m: j for j, m in enumerate(labels)}
    rows = []

    def row(head: str, scores, rgb: str) -> None:
        cells = "".join(f'<td style="background:rgba({rgb},{s:.2f})" title="{k} s: {s:.2f}"></td>' for k, s in enumerate(scores[:PAGE_MAX_SECONDS]))
        rows.append(f"<tr><th>{head}</th>{cells}</tr>")

    for mid in [*clip.labels, *clip.missing]:
        tag = "given" if mid in clip.labels else "missing?"
        row(f"{html.escape(names.get(mid, mid))} <small>({tag})</small>", clip.per_second[:, index[mid]], "40,110,200")
    if clap is not None and clap.per_second is not None:
        for mid in clip.labels:
            row(f"{html.escape(names.get(mid, mid))} <small>(CLAP)</small>", clap.per_second[:, index[mid]], "220,120,30")
    return f'<table class="strip">{"".join(rows)}</table>'


def _clap_line(clip: ClipSuspicion, labels: list[str], names: dict[str, str], clap: ClapClip | None) -> str:
    if clap is None:
        return ""
    columns = clip_columns(clap, clip.labels, labels, names)
    if columns["clap_problem"]:
        return f'<p class="muted clap">CLAP: not scored ({html.escape(columns["clap_problem"])})</p>'
    ranks = columns["clap_ranks"].replace(";", ", ") or "(no labels)"
    return f'<p class="clap">CLAP zero-shot: most likely {html.escape(columns["clap_top"].replace(";", ", ")) }; the given labels rank {html.escape(ranks)}</p>'


def _card(
    rank: int, clip: ClipSuspicion, labels: list[str], names: dict[str, str], spec: np.ndarray | None, audio: str | None, audio_problem: str,
    clap: ClapClip | None = None,
) -> str:
    e = html.escape
    label_names = [names.get(m, m) for m in clip.labels]
    change = {
        KEEP: "keep",
        DROP: "drop the clip",
        RELABEL: f"relabel to: {_names(clip.suggested_labels, names) or '(none)'}",
    }[clip.suggestion]
    details = []
    if clip.wrong:
        details.append(f"probably wrong: {e(_names(clip.wrong, names))}")
    if clip.missing:
        details.append(f"probably missing: {e(_names(clip.missing, names))}")
    for mid, seconds in clip.partial.items():
        details.append(f"{e(names.get(mid, mid))} seems absent from seconds {e(', '.join(str(s) for s in seconds))}")
    top = sorted(clip.probability.items(), key=lambda kv: -kv[1])[:3]
    image = f'<img class="spec" alt="spectrogram" src="{_data_url("image/png", spectrogram_png(spec[:PAGE_MAX_SECONDS]))}">' if spec is not None and len(spec) else ""
    player = f'<audio controls preload="none" src="{audio}"></audio>' if audio else f'<p class="muted">no audio: {e(audio_problem)}</p>'
    suggested = "; ".join(names.get(m, m) for m in clip.suggested_labels) if clip.suggestion == RELABEL else "; ".join(label_names)
    all_labels = sorted({*clip.labels, *clip.missing})
    return f"""
<section class="clip" data-clip="{e(clip.clip_id)}" data-labels="{e('|'.join(all_labels))}" data-issue="{int(clip.issue)}"
  data-suggestion="{e(clip.suggestion)}" data-suggested-labels="{e(suggested)}" data-suspicion="{clip.suspicion:.6f}">
  <h2>#{rank} <code>{e(clip.clip_id)}</code> <span class="score">suspicion {clip.suspicion:.3f}</span>{' <span class="flag">issue</span>' if clip.issue else ''}</h2>
  <p class="muted">{e(clip.source)} from {clip.start_s:.1f} s, {clip.n_seconds} s{f" (the first {PAGE_MAX_SECONDS} s shown)" if clip.n_seconds > PAGE_MAX_SECONDS else ""}</p>
  {image}
  {player}
  <p><b>labels:</b> {e('; '.join(label_names) or '(none: a negative)')}</p>
  <p><b>suggested:</b> {e(change)}</p>
  {''.join(f'<p class="detail">{d}</p>' for d in details)}
  <p class="muted">most likely: {e(', '.join(f'{names.get(m, m)} {p:.2f}' for m, p in top))}; wrong {clip.wrong_score:.2f}, missing {clip.missing_score:.2f}, cleanlab label quality {clip.label_quality:.3f}</p>
  {_clap_line(clip, labels, names, clap)}
  {_second_strip(clip, labels, names, clap)}
  <div class="decide">
    <label>decision <select class="decision">
      <option value="">(undecided)</option><option value="keep">keep</option><option value="drop">drop</option><option value="relabel">relabel</option>
    </select></label>
    <label>labels <input class="new-labels" size="50" value="{e(suggested)}" title="';'-separated display names or mids, for relabel"></label>
    <button class="accept" type="button">accept suggestion</button>
  </div>
</section>"""


_SCRIPT = r"""
const cards = Array.from(document.querySelectorAll("section.clip"));
const filter = document.getElementById("label-filter");
const issuesOnly = document.getElementById("issues-only");
function applyFilter() {
  const want = filter.value;
  for (const card of cards) {
    const labels = card.dataset.labels.split("|");
    const show = (!want || labels.includes(want)) && (!issuesOnly.checked || card.dataset.issue === "1");
    card.hidden = !show;
  }
  document.getElementById("shown").textContent = cards.filter(c => !c.hidden).length;
}
filter.addEventListener("change", applyFilter);
issuesOnly.addEventListener("change", applyFilter);
function decided() {
  return cards.filter(c => c.querySelector(".decision").value).length;
}
for (const card of cards) {
  card.querySelector(".accept").addEventListener("click", () => {
    card.querySelector(".decision").value = card.dataset.suggestion;
    card.querySelector(".new-labels").value = card.dataset.suggestedLabels;
    document.getElementById("decided").textContent = decided();
  });
  card.querySelector(".decision").addEventListener("change", () => {
    document.getElementById("decided").textContent = decided();
  });
}
function csvField(text) {
  return /[",\n\r]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
}
document.getElementById("download").addEventListener("click", () => {
  const lines = ["clip_id,decision,labels,suspicion"];
  for (const card of cards) {
    const decision = card.querySelector(".decision").value;
    if (!decision) continue;
    const labels = decision === "relabel" ? card.querySelector(".new-labels").value : "";
    lines.push([card.dataset.clip, decision, labels, card.dataset.suspicion].map(csvField).join(","));
  }
  const blob = new Blob([lines.join("\n") + "\n"], {type: "text/csv"});
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = "decisions.csv";
  document.body.appendChild(link);
  link.click();
  link.remove();
});
applyFilter();
"""

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;max-width:1100px;color:#222}
section.clip{border:1px solid #ccc;border-radius:6px;padding:.6em 1em;margin:1em 0}
h2{font-size:1.05em;margin:.2em 0}.score{color:#a33;font-weight:normal}.flag{background:#a33;color:#fff;padding:0 .4em;border-radius:3px;font-size:.8em}
img.spec{width:100%;max-height:160px;image-rendering:pixelated}.muted{color:#666;font-size:.9em}.detail{margin:.1em 0;color:#734}
table.strip{border-collapse:collapse;font-size:.8em}table.strip td{width:14px;height:12px;border:1px solid #eee}table.strip th{text-align:left;font-weight:normal;padding-right:.5em}
.clap{color:#a55a10;font-size:.9em;margin:.1em 0}
.toolbar{position:sticky;top:0;background:#fff;padding:.5em 0;border-bottom:1px solid #ddd}
"""


def write_review_page(
    path: str,
    clips: list[ClipSuspicion],
    labels: list[str],
    names: dict[str, str],
    spectrograms: dict[str, np.ndarray],
    *,
    title: str,
    summary: str,
    audio: bool = True,
    clap: dict[str, ClapClip] | None = None,
) -> None:
    """Write the page for ``clips`` (in the order given, most suspicious first) to ``path``;
    ``clap``: zero-shot scores per clip id, shown beside the out-of-fold ones."""
    from sound_captions import storage

    cards = []
    for rank, clip in enumerate(clips, start=1):
        url, problem = None, ""
        if audio:
            try:
                url = _data_url("audio/ogg", clip_audio(clip.source, clip.start_s, float(min(clip.n_seconds, PAGE_MAX_SECONDS))))
            except Exception as exc:  # noqa: BLE001 - the page is still useful without the player
                problem = str(exc).splitlines()[-1] if str(exc) else type(exc).__name__
        else:
            problem = "not embedded (--no-audio)"
        zero_shot = clap.get(clip.clip_id) if clap is not None else None
        cards.append(_card(rank, clip, labels, names, spectrograms.get(clip.clip_id), url, problem, zero_shot))
    present = sorted({m for c in clips for m in (*c.labels, *c.missing)}, key=lambda m: names.get(m, m).lower())
    options = "".join(f'<option value="{html.escape(m)}">{html.escape(names.get(m, m))}</option>' for m in present)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; media-src data: blob:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<style>{_STYLE}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{html.escape(summary)}</p>
<div class="toolbar">
  <label>label <select id="label-filter"><option value="">(all)</option>{options}</select></label>
  <label><input type="checkbox" id="issues-only"> cleanlab issues only</label>
  <span class="muted"><span id="shown">{len(clips)}</span> shown, <span id="decided">0</span> decided</span>
  <button id="download" type="button">download decisions.csv</button>
</div>
{''.join(cards)}
<script>{_SCRIPT}</script>
</body></html>
"""
    storage.write_text(path, page)
