"""Video + WebVTT (+ scores Parquet, + speech WebVTT) → one self-contained HTML preview page.

The page holds an HTML5 ``<video>`` with the sound captions as a ``<track kind="captions">``
(and the speech subtitles when given) and, under it, a timeline: one lane of cue bars per
distinct caption and a heat map of per-second label probabilities, a cursor that follows
playback, and click-to-seek.

Everything is inline except the video file, which sits next to the page (copied, linked, or
transcoded to a WebM proxy when the browser could not play it, see
:mod:`sound_captions.preview.media`). The WebVTT files are embedded as ``data:`` URLs because
Chromium treats a ``<track src>`` next to a page opened from ``file://`` as cross-origin and
drops it without a word; ``data:`` tracks load (verified in headless Chromium 156).
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sound_captions.paths import join_inside, safe_file_name
from sound_captions.preview import media as media_mod
from sound_captions.preview.template import PAGE_CSS, PAGE_HTML, PAGE_JS, VIRIDIS_STOPS
from sound_captions.preview.timeline import (
    DEFAULT_MAX_ROWS,
    ScoreGrid,
    cue_lanes,
    grid_payload,
    parse_vtt,
    read_scores,
)

Transcode = Literal["auto", "always", "never"]


def read_uri_bytes(uri: str | os.PathLike) -> bytes:
    """Bytes of a local path, ``file://`` URI or (through :mod:`sound_captions.storage`) s3:// URI."""
    text = os.fspath(uri)
    if text.startswith("s3://"):
        from sound_captions.storage import read_bytes

        return read_bytes(text)
    return _local(text).read_bytes()


def _local(uri: str) -> Path:
    if uri.startswith("file://"):
        return Path(urllib.parse.unquote(urllib.parse.urlparse(uri).path))
    if "://" in uri:
        raise ValueError(
            f"unsupported URI for a preview input (use a path, file:// or s3://): {uri!r}"
        )
    return Path(uri)


def _uri_name(uri: str) -> str:
    return (
        urllib.parse.unquote(uri.rstrip("/").rsplit("/", 1)[-1]) if "://" in uri else Path(uri).name
    )


def vtt_data_url(text: str) -> str:
    """A WebVTT document as a ``data:text/vtt`` URL (base64 of its UTF-8 bytes)."""
    return "data:text/vtt;charset=utf-8;base64," + base64.b64encode(text.encode("utf-8")).decode(
        "ascii"
    )


def _json_for_script(data: object) -> str:
    """JSON safe inside ``<script>``: no ``</script>`` or ``<!--`` can appear in it."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")


def _norm(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def lane_rows(lanes: list[str], grid: ScoreGrid | None, caption_text: dict[str, str]) -> list[int]:
    """For each lane, the heat-map row of the label whose caption it is, or -1 when unknown.

    A lane matches a row when the scores file's ``caption_text`` metadata maps the row's mid to
    the lane text, or when the lane text equals the label's display name (ignoring case and
    punctuation).
    """
    if grid is None:
        return [-1] * len(lanes)
    rows = []
    for lane in lanes:
        row = -1
        for i, (mid, name) in enumerate(zip(grid.labels, grid.names, strict=True)):
            if _norm(caption_text.get(mid, "")) == _norm(lane) or _norm(name) == _norm(lane):
                row = i
                break
        rows.append(row)
    return rows


def _caption_text_from_scores(data: bytes) -> dict[str, str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    meta = pq.read_schema(pa.BufferReader(data)).metadata or {}
    return json.loads(meta[b"caption_text"]) if b"caption_text" in meta else {}


def describe_media(probe: media_mod.MediaProbe, file_name: str) -> str:
    """``"avi file, mjpeg video, pcm_s16le audio"``: what a viewer needs to know about a file."""
    kind = (Path(file_name).suffix.lstrip(".") or probe.containers[0]).lower()
    return ", ".join(
        [f"{kind} file"]
        + [f"{c} video" for c in probe.video_codecs[:1]]
        + [f"{c} audio" for c in probe.audio_codecs[:1]]
    )


@dataclass(frozen=True)
class PreparedVideo:
    """The file the page plays: ``src`` relative to the page's folder (URL-quoted), its probe,
    whether the browser is expected to play it, and a note naming the source (and proxy)."""

    src: str
    probe: media_mod.MediaProbe
    playable: bool
    note: str


def prepare_video(
    video_uri: str, out_dir: Path, *, copy_video: bool, transcode: Transcode
) -> PreparedVideo:
    """Put a playable video where the page can reach it (copy, relative link or WebM proxy)."""
    if transcode not in ("auto", "always", "never"):
        raise ValueError(f"transcode must be 'auto', 'always' or 'never', not {transcode!r}")
    name = safe_file_name(_uri_name(video_uri))  # a name from outside: one segment, inside out_dir
    if video_uri.startswith("s3://"):
        source = (out_dir / name).resolve()
        media_mod.copy_bytes(read_uri_bytes(video_uri), source)
        fetched = True
    else:
        source = _local(video_uri).resolve()
        if not source.is_file():
            raise media_mod.PreviewMediaError(f"video not found: {video_uri}")
        fetched = False
    probe = media_mod.probe_media(source)
    playable = media_mod.is_browser_playable(probe)
    note = describe_media(probe, name)

    if transcode == "always" or (transcode == "auto" and not playable):
        proxy = out_dir / (Path(name).stem + media_mod.PROXY_SUFFIX)
        media_mod.write_proxy(source, proxy, probe)
        if fetched:
            source.unlink()
        played, probe, playable = proxy, media_mod.probe_media(proxy), True
        note = f"{note}; playing a WebM proxy ({describe_media(probe, proxy.name)})"
    elif fetched or not copy_video:
        played = source
    else:
        played = out_dir / name
        if played.resolve() != source:
            media_mod.copy_file(source, played)
    rel = os.path.relpath(played.resolve(), out_dir.resolve()).replace(os.sep, "/")
    return PreparedVideo(urllib.parse.quote(rel), probe, playable, note)


def write_preview(
    video_uri: str | os.PathLike,
    captions_uri: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    scores_uri: str | os.PathLike | None = None,
    speech_uri: str | os.PathLike | None = None,
    title: str | None = None,
    copy_video: bool = True,
    transcode: Transcode = "auto",
    max_rows: int = DEFAULT_MAX_ROWS,
    page_name: str | None = None,
) -> Path:
    """Write ``<out_dir>/<video stem>.html`` (or ``page_name``) and the video it plays.

    Args:
        video_uri: the video (local path, ``file://`` or ``s3://``; an s3 video is always fetched).
        captions_uri: the sound captions WebVTT.
        out_dir: a local folder (created); the page and its video land there.
        scores_uri: the per-second ``*.scores.parquet`` for the heat map (optional).
        speech_uri: a speech subtitles WebVTT, shown as a second track (optional).
        title: page heading; defaults to the video's file name.
        copy_video: copy a local video next to the page (``True``) or link it relatively.
        transcode: ``"auto"`` makes a WebM proxy only when the browser could not play the file,
            ``"always"`` always does, ``"never"`` never does (the page then says what it cannot
            play and keeps captions and timeline working).
        max_rows: heat-map rows (labels with the highest peak probability).
        page_name: file name of the page.

    Returns:
        The path of the written page.
    """
    video_uri, captions_uri = os.fspath(video_uri), os.fspath(captions_uri)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    captions_text = read_uri_bytes(captions_uri).decode("utf-8-sig")
    cues = parse_vtt(captions_text)
    speech_text = read_uri_bytes(speech_uri).decode("utf-8-sig") if speech_uri is not None else None
    if speech_text is not None:
        parse_vtt(speech_text)  # refuse a broken speech file here rather than in the browser
    grid, caption_text = None, {}
    if scores_uri is not None:
        scores = read_uri_bytes(scores_uri)
        grid = read_scores(scores, max_rows=max_rows)
        caption_text = _caption_text_from_scores(scores)
    lanes, bars = cue_lanes(cues)

    video = prepare_video(video_uri, out, copy_video=copy_video, transcode=transcode)
    name = _uri_name(video_uri)
    data = {
        "title": title or name,
        "durationS": video.probe.duration_s,
        "hasVideo": video.probe.has_video,
        "expectPlayable": video.playable,
        "mediaNote": video.note,
        "cues": [{"start": c.start_ms, "end": c.end_ms, "text": c.text} for c in cues],
        "lanes": lanes,
        "bars": [list(bar) for bar in bars],
        "laneRows": lane_rows(lanes, grid, caption_text),
        "grid": grid_payload(grid) if grid is not None else None,
        "ramp": list(VIRIDIS_STOPS),
    }

    meta = [f"{len(cues)} sound cue{'s' if len(cues) != 1 else ''}", html.escape(video.note)]
    if grid is not None:
        meta.append(
            f"heat map: top {len(grid.labels)} of {grid.total_labels} labels by peak probability"
        )
    if speech_text is not None:
        meta.append("with speech subtitles")
    legend = '<span><span class="swatch"></span> sound caption cue</span>'
    if grid is not None:
        legend += '<span>probability 0 <span class="ramp"></span> 1</span>'
    legend += "<span>click the timeline to seek; ← → step one second</span>"
    speech_track = (
        f'<track id="speech-track" kind="subtitles" srclang="en" label="Speech" src="{vtt_data_url(speech_text)}">\n'
        if speech_text is not None
        else ""
    )
    values = {
        "CSS": PAGE_CSS.replace("@@RAMP@@", ", ".join(VIRIDIS_STOPS)),
        "JS": PAGE_JS,
        "TITLE": html.escape(title or name),
        "META": " · ".join(meta),
        "VIDEO_SRC": html.escape(video.src),
        "SOUND_VTT": vtt_data_url(captions_text),
        "SPEECH_TRACK": speech_track,
        "LEGEND": legend,
        "DATA": _json_for_script(data),
    }
    # one pass, so text from the inputs can never be taken for a marker
    page = re.sub(r"@@([A-Z_]+)@@", lambda m: values[m.group(1)], PAGE_HTML)
    page_path = (
        Path(join_inside(out, page_name))
        if page_name
        else out / safe_file_name(f"{Path(name).stem}.html")
    )
    media_mod.copy_bytes(page.encode("utf-8"), page_path)
    return page_path
