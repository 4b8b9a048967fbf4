"""The preview page's HTML, CSS and JavaScript, inline so the page needs no other file.

Kept as Python strings (not package data) so an installed wheel always carries them. Markers
``@@NAME@@`` are filled by :mod:`sound_captions.preview.page`; the page's data arrive as one
JSON document in ``<script type="application/json" id="preview-data">``.
"""

from __future__ import annotations

#: Viridis at 9 stops: perceptually uniform and readable for colour-blind viewers.
VIRIDIS_STOPS = (
    "#440154", "#472c7a", "#3b518b", "#2c718e", "#21908d",
    "#27ad81", "#5cc863", "#aadc32", "#fde725",
)  # fmt: skip

PAGE_CSS = """
:root { color-scheme: light; --fg: #1d1d1f; --muted: #5f6368; --line: #d9d9de; --accent: #d93f0b; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: var(--fg); background: #f6f6f8; }
header, main { max-width: 1100px; margin: 0 auto; padding: 0 16px; }
header { padding-top: 14px; }
h1 { font-size: 18px; margin: 0 0 2px; word-break: break-all; }
.meta { color: var(--muted); margin: 0 0 10px; }
.meta a { color: inherit; }
#player { position: relative; background: #000; border-radius: 6px; overflow: hidden; }
#video[hidden] { display: none; }
#video { display: block; width: 100%; max-height: 62vh; min-height: 120px; background: #000; }
#media-message { margin: 0; padding: 8px 12px; background: #fff4e5; color: #663c00;
                 border-top: 1px solid #f0c36d; }
#caption-box { min-height: 2.6em; padding: 8px 12px; background: #111; color: #fff; text-align: center;
               font-size: 18px; white-space: pre-line; }
#caption-box:empty::before { content: "\\00a0"; }
#timeline-section { margin-top: 12px; background: #fff; border: 1px solid var(--line); border-radius: 6px;
                    padding: 8px 8px 6px; }
#timeline-wrap { position: relative; cursor: crosshair; outline: none; }
#timeline-wrap:focus-visible { box-shadow: 0 0 0 2px #1a73e8; }
#timeline { display: block; }
#cursor { position: absolute; top: 0; left: 0; width: 2px; margin-left: -1px; background: var(--accent);
          pointer-events: none; box-shadow: 0 0 0 1px rgba(255,255,255,.7); }
#readout { min-height: 1.4em; color: var(--muted); font-variant-numeric: tabular-nums; }
.legend { display: flex; gap: 14px; align-items: center; color: var(--muted); font-size: 12px; margin: 4px 0 0; }
.ramp { display: inline-block; width: 120px; height: 10px; vertical-align: middle; border-radius: 2px;
        background: linear-gradient(to right, @@RAMP@@); }
.swatch { display: inline-block; width: 14px; height: 10px; vertical-align: middle; background: var(--accent); border-radius: 2px; }
footer { max-width: 1100px; margin: 10px auto 20px; padding: 0 16px; color: var(--muted); font-size: 12px; }
"""

PAGE_JS = r"""
(function () {
  "use strict";
  const D = JSON.parse(document.getElementById("preview-data").textContent);
  const video = document.getElementById("video");
  const canvas = document.getElementById("timeline");
  const wrap = document.getElementById("timeline-wrap");
  const cursor = document.getElementById("cursor");
  const box = document.getElementById("caption-box");
  const message = document.getElementById("media-message");
  const readout = document.getElementById("readout");
  const soundTrack = document.getElementById("sound-track").track;
  const speechEl = document.getElementById("speech-track");

  const AXIS_H = 20, LANE_H = 18, ROW_H = 14, GAP = 8, GUTTER = 200, PAD_R = 12;
  const BACKGROUND = "#ffffff", BAR = "#d93f0b", GRID = "#e6e6ea", TEXT = "#1d1d1f", MUTED = "#5f6368";

  // media: "loading" | "playable" | "no-picture" (audio plays, no picture) | "unplayable"
  let media = "loading";
  let pageTime = 0;          // the clock while the browser cannot play the file at all
  let geom = null;
  let hovering = false;      // the readout shows the pointer's time and value, else the position

  soundTrack.mode = "showing";
  if (speechEl) speechEl.track.mode = "showing";

  // --- colour map -------------------------------------------------------------------------
  const STOPS = D.ramp.map(function (hex) {
    return [1, 3, 5].map(function (i) { return parseInt(hex.substr(i, 2), 16); });
  });
  const LUT = new Uint8ClampedArray(256 * 3);
  for (let v = 0; v < 256; v++) {
    const pos = v / 255 * (STOPS.length - 1), i = Math.min(STOPS.length - 2, Math.floor(pos)), f = pos - i;
    for (let c = 0; c < 3; c++) LUT[v * 3 + c] = Math.round(STOPS[i][c] * (1 - f) + STOPS[i + 1][c] * f);
  }

  let probs = null;
  if (D.grid) {
    const bin = atob(D.grid.probsB64);
    probs = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) probs[i] = bin.charCodeAt(i);
  }

  // --- time ---------------------------------------------------------------------------------
  function nSeconds() {
    // Second k is [k, k+1); a last partial second shorter than 0.5 s is not a column.
    let n = 1;
    if (D.grid) n = Math.max(n, D.grid.seconds);
    for (const c of D.cues) n = Math.max(n, Math.ceil(c.end / 1000));
    if (D.durationS) n = Math.max(n, Math.round(D.durationS));
    if (isFinite(video.duration) && video.duration > 0) n = Math.max(n, Math.round(video.duration));
    return n;
  }
  function now() { return media === "unplayable" ? pageTime : video.currentTime; }
  function fmt(t) {
    t = Math.max(0, t);
    const h = Math.floor(t / 3600), m = Math.floor(t / 60) % 60, s = Math.floor(t % 60);
    const mm = h ? String(m).padStart(2, "0") : String(m);
    return (h ? h + ":" : "") + mm + ":" + String(s).padStart(2, "0");
  }
  function seek(t) {
    const n = geom ? geom.seconds : nSeconds();
    t = Math.min(Math.max(0, t), n);
    if (media === "unplayable") { pageTime = t; } else { video.currentTime = t; }
    update();
  }

  // --- drawing ------------------------------------------------------------------------------
  function fitText(ctx, text, maxW) {
    if (ctx.measureText(text).width <= maxW) return text;
    while (text.length > 1 && ctx.measureText(text + "…").width > maxW) text = text.slice(0, -1);
    return text + "…";
  }
  function tickStep(pxPerSecond) {
    for (const s of [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600]) if (s * pxPerSecond >= 56) return s;
    return 7200;
  }
  function draw() {
    const n = nSeconds();
    const dpr = window.devicePixelRatio || 1;
    const cssW = Math.max(480, Math.floor(wrap.clientWidth));
    const lanes = Math.max(1, D.lanes.length);
    const rows = D.grid ? D.grid.labels.length : 0;
    const laneTop = AXIS_H, heatTop = AXIS_H + lanes * LANE_H + (rows ? GAP : 0);
    const cssH = heatTop + rows * ROW_H + 2;
    canvas.width = Math.round(cssW * dpr);
    canvas.height = Math.round(cssH * dpr);
    canvas.style.width = cssW + "px";
    canvas.style.height = cssH + "px";
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = BACKGROUND;
    ctx.fillRect(0, 0, cssW, cssH);
    const left = GUTTER, width = cssW - GUTTER - PAD_R;
    const xOf = function (t) { return left + t / n * width; };

    // time axis and grid lines
    const step = tickStep(width / n);
    ctx.font = "11px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    ctx.textAlign = "center";
    for (let t = 0; t <= n; t += step) {
      const x = Math.round(xOf(t)) + 0.5;
      ctx.fillStyle = GRID;
      ctx.fillRect(x - 0.5, AXIS_H - 4, 1, cssH - AXIS_H + 4);
      ctx.fillStyle = MUTED;
      ctx.fillText(fmt(t), Math.min(Math.max(x, left + 12), left + width - 12), AXIS_H / 2);
    }

    // cue lanes: one per distinct caption
    ctx.textAlign = "right";
    ctx.font = "12px system-ui, sans-serif";
    for (let i = 0; i < lanes; i++) {
      const y = laneTop + i * LANE_H;
      if (i % 2 === 0) { ctx.fillStyle = "#f4f4f7"; ctx.fillRect(left, y, width, LANE_H); }
      ctx.fillStyle = TEXT;
      const name = D.lanes.length ? D.lanes[i] : "(no captions)";
      ctx.fillText(fitText(ctx, name, GUTTER - 12), GUTTER - 8, y + LANE_H / 2);
    }
    for (const bar of D.bars) {
      const x0 = xOf(bar[1] / 1000), x1 = xOf(bar[2] / 1000);
      ctx.fillStyle = BAR;
      ctx.fillRect(x0, laneTop + bar[0] * LANE_H + 3, Math.max(1, x1 - x0), LANE_H - 6);
    }

    // heat map: rows = labels, columns = seconds, colour = probability
    if (rows) {
      const cols = D.grid.seconds;
      const off = document.createElement("canvas");
      off.width = Math.max(1, cols); off.height = rows;
      const octx = off.getContext("2d");
      const img = octx.createImageData(off.width, rows);
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < cols; c++) {
          const v = probs[r * cols + c], o = (r * off.width + c) * 4;
          img.data[o] = LUT[v * 3]; img.data[o + 1] = LUT[v * 3 + 1]; img.data[o + 2] = LUT[v * 3 + 2]; img.data[o + 3] = 255;
        }
      }
      octx.putImageData(img, 0, 0);
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(off, left, heatTop, xOf(cols) - left, rows * ROW_H);
      ctx.font = "11px system-ui, sans-serif";
      for (let r = 0; r < rows; r++) {
        ctx.fillStyle = TEXT;
        ctx.fillText(fitText(ctx, D.grid.names[r], GUTTER - 12), GUTTER - 8, heatTop + r * ROW_H + ROW_H / 2);
      }
      // the cues drawn on the heat map: a thin frame across all rows for each cue, and a bold
      // frame on the row of the label the caption came from when it is known
      for (const bar of D.bars) {
        const x0 = xOf(bar[1] / 1000), x1 = xOf(bar[2] / 1000);
        ctx.strokeStyle = "rgba(255,255,255,0.55)";
        ctx.lineWidth = 1;
        ctx.strokeRect(x0 + 0.5, heatTop + 0.5, Math.max(1, x1 - x0 - 1), rows * ROW_H - 1);
        const row = D.laneRows[bar[0]];
        if (row >= 0) {
          ctx.strokeStyle = BAR;
          ctx.lineWidth = 2;
          ctx.strokeRect(x0 + 1, heatTop + row * ROW_H + 1, Math.max(1, x1 - x0 - 2), ROW_H - 2);
        }
      }
    }

    geom = { left: left, width: width, top: 0, height: cssH, seconds: n, laneTop: laneTop, heatTop: heatTop };
    cursor.style.top = (AXIS_H - 3) + "px";  // under the tick labels, so they stay readable
    cursor.style.height = (cssH - AXIS_H + 3) + "px";
    wrap.setAttribute("aria-valuemax", String(n));
    publish(true);
    update();
  }

  // --- playback state -----------------------------------------------------------------------
  function activeTexts() {
    if (media !== "unplayable" && soundTrack.activeCues) {
      return Array.from(soundTrack.activeCues).map(function (c) { return c.text; });
    }
    const ms = now() * 1000;
    return D.cues.filter(function (c) { return c.start <= ms && ms < c.end; }).map(function (c) { return c.text; });
  }
  function update() {
    if (!geom) return;
    const t = now();
    cursor.style.transform = "translateX(" + (geom.left + Math.min(t, geom.seconds) / geom.seconds * geom.width) + "px)";
    wrap.setAttribute("aria-valuenow", t.toFixed(1));
    wrap.setAttribute("aria-valuetext", fmt(t));
    if (!box.hidden) box.textContent = activeTexts().join("\n");
    if (!hovering) readout.textContent = "at " + fmt(t) + (media === "unplayable" ? "" : (video.paused ? " (paused)" : ""));
  }
  function setMedia(state, text) {
    media = state;
    message.hidden = !text;
    message.textContent = text || "";
    box.hidden = state === "playable";
    video.hidden = state === "unplayable";  // its spinner and 0:00 would contradict the timeline
    publish(Boolean(geom));
    update();
  }
  function publish(drawn) {
    window.__preview = {
      drawn: drawn,
      media: media,
      labels: D.grid ? D.grid.labels.slice() : [],
      names: D.grid ? D.grid.names.slice() : [],
      lanes: D.lanes.slice(),
      seconds: geom ? geom.seconds : nSeconds(),
      geometry: geom,
      xForTime: function (t) { return geom.left + t / geom.seconds * geom.width; },
      currentTime: now,
      activeTexts: activeTexts,
      seek: seek,
    };
  }

  video.addEventListener("error", function () {
    setMedia("unplayable", "This browser cannot play this file (" + D.mediaNote + "). The captions and " +
      "the timeline still work: click the timeline to move through them. For a playable copy, run " +
      "sound-captions preview again with --transcode always.");
  });
  function onMetadata() {
    if (D.hasVideo && video.videoWidth === 0) {
      setMedia("no-picture", "This browser plays the sound of this file but cannot show its picture (" +
        D.mediaNote + "). For a playable copy, run sound-captions preview again with --transcode always.");
    } else {
      setMedia(D.hasVideo ? "playable" : "no-picture", "");
    }
    draw();
  }
  video.addEventListener("loadedmetadata", onMetadata);
  // the media may have got this far while the page was still parsing
  if (video.error) video.dispatchEvent(new Event("error"));
  else if (video.readyState >= 1) onMetadata();
  soundTrack.addEventListener("cuechange", update);
  ["timeupdate", "seeking", "seeked", "pause"].forEach(function (ev) { video.addEventListener(ev, update); });
  video.addEventListener("play", function loop() {
    update();
    if (!video.paused && !video.ended) requestAnimationFrame(loop);
  });

  // --- interaction --------------------------------------------------------------------------
  function timeAt(clientX) {
    const r = canvas.getBoundingClientRect();
    return (clientX - r.left - geom.left) / geom.width * geom.seconds;
  }
  wrap.addEventListener("click", function (e) { if (geom) seek(timeAt(e.clientX)); });
  wrap.addEventListener("mousemove", function (e) {
    if (!geom) return;
    hovering = true;
    const r = canvas.getBoundingClientRect();
    const t = timeAt(e.clientX), y = e.clientY - r.top, sec = Math.floor(t);
    let text = "pointer " + fmt(Math.max(0, t));
    if (D.grid && y >= geom.heatTop && sec >= 0 && sec < D.grid.seconds) {
      const row = Math.floor((y - geom.heatTop) / ROW_H);
      if (row >= 0 && row < D.grid.labels.length) {
        text += " · " + D.grid.names[row] + " " + (probs[row * D.grid.seconds + sec] / 255).toFixed(2);
      }
    } else if (y >= geom.laneTop && y < geom.heatTop) {
      const lane = Math.floor((y - geom.laneTop) / LANE_H);
      if (lane < D.lanes.length) text += " · " + D.lanes[lane];
    }
    readout.textContent = text;
  });
  wrap.addEventListener("mouseleave", function () { hovering = false; update(); });
  wrap.addEventListener("keydown", function (e) {
    const jumps = { ArrowLeft: -1, ArrowRight: 1, PageUp: -10, PageDown: 10 };
    if (e.key in jumps) { seek(now() + jumps[e.key]); e.preventDefault(); }
    else if (e.key === "Home") { seek(0); e.preventDefault(); }
    else if (e.key === " " && media !== "unplayable") { if (video.paused) video.play(); else video.pause(); e.preventDefault(); }
  });
  window.addEventListener("resize", function () { if (geom) draw(); });

  box.hidden = D.hasVideo;
  draw();
})();
"""

PAGE_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="sound-captions preview">
<title>@@TITLE@@ · sound captions</title>
<style>@@CSS@@</style>
</head>
<body>
<header>
<h1>@@TITLE@@</h1>
<p class="meta">@@META@@</p>
</header>
<main>
<div id="player">
<video id="video" controls preload="auto" playsinline src="@@VIDEO_SRC@@">
<track id="sound-track" kind="captions" srclang="en" label="Sound captions" default src="@@SOUND_VTT@@">
@@SPEECH_TRACK@@</video>
<p id="media-message" hidden role="status"></p>
<div id="caption-box" aria-live="polite" hidden></div>
</div>
<section id="timeline-section" aria-label="Timeline">
<div id="timeline-wrap" tabindex="0" role="slider" aria-label="Timeline: click or use the arrow keys to seek"
     aria-valuemin="0" aria-valuemax="0" aria-valuenow="0">
<canvas id="timeline" width="960" height="60"></canvas>
<div id="cursor"></div>
</div>
<div id="readout"></div>
<p class="legend">@@LEGEND@@</p>
</section>
</main>
<footer>Made by sound-captions. Everything this page needs is in this folder; it opens from disk without a server.</footer>
<script type="application/json" id="preview-data">@@DATA@@</script>
<script>@@JS@@</script>
</body>
</html>
"""
