"""Preview pages: pure checks of parsing and page content, then the page in headless Chromium.

Truth of the generated media: silence 0–2 s, a 1 kHz sine 2–5 s, silence 5–8 s; the captions
file says ``[beeping]`` from 2 to 5 s (top-placed), the speech file says ``Hello there`` 0.5–1.5 s.
"""

from __future__ import annotations

import base64
import html.parser
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from browser_helpers import ARTIFACTS, chromium_browser, open_page, save_screenshot

from sound_captions.preview import write_preview, write_run_index, write_run_previews
from sound_captions.preview.media import (
    PROXY_SUFFIX,
    ffmpeg_exe,
    is_browser_playable,
    parse_probe,
    probe_media,
)
from sound_captions.preview.timeline import (
    Cue,
    PreviewInputError,
    cue_lanes,
    grid_payload,
    lane_key,
    parse_vtt,
    read_scores,
)

CAPTIONS_VTT = """WEBVTT

NOTE made by hand for the preview tests

1
00:00:02.000 --> 00:00:05.000 line:0 position:50% align:center
[beeping]
"""

SPEECH_VTT = """WEBVTT

00:00:00.500 --> 00:00:01.500
Hello there
"""

BEEP_MID, MUSIC_MID, SPEECH_MID = "/m/02fs_r", "/m/04rlf", "/m/09x0r"
LABEL_NAMES = {BEEP_MID: "Beep, bleep", MUSIC_MID: "Music", SPEECH_MID: "Speech"}
N_SECONDS = 8


# --- fixtures: media, captions, scores ---------------------------------------------------------


def _has_encoder(name: str) -> bool:
    out = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-encoders"], capture_output=True, text=True, check=True
    ).stdout
    return re.search(rf"^\s*\S+\s+{re.escape(name)}\s", out, re.MULTILINE) is not None


def make_video(path: Path, vcodec: list[str] | None, acodec: list[str]) -> Path:
    """8 s test pattern at 320×240/25 fps (none when ``vcodec`` is None); audio: silence 0–2 s,
    1 kHz sine 2–5 s, silence 5–8 s."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]
    cmd += ["-f", "lavfi", "-i", "anullsrc=r=48000:cl=mono:d=2"]
    cmd += ["-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000:duration=3"]
    cmd += ["-f", "lavfi", "-i", "anullsrc=r=48000:cl=mono:d=3"]
    if vcodec is not None:
        cmd += ["-f", "lavfi", "-i", f"testsrc=size=320x240:rate=25:duration={N_SECONDS}"]
    cmd += ["-filter_complex", "[0:a][1:a][2:a]concat=n=3:v=0:a=1[a]", "-map", "[a]", *acodec]
    if vcodec is not None:
        cmd += ["-map", "3:v", *vcodec]
    cmd += ["-t", str(N_SECONDS), str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return path


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("media")
    h264 = (
        ["-c:v", "libx264", "-pix_fmt", "yuv420p"] if _has_encoder("libx264") else ["-c:v", "mpeg4"]
    )
    return {
        "mp4": make_video(root / "clip.mp4", h264, ["-c:a", "aac"]),
        "webm": make_video(
            root / "clip.webm",
            ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "200k"],
            ["-c:a", "libopus"],
        ),
        # Motion-JPEG + PCM in AVI: a camcorder file no browser plays
        "avi": make_video(root / "clip.avi", ["-c:v", "mjpeg"], ["-c:a", "pcm_s16le"]),
        "m4a": make_video(root / "clip.m4a", None, ["-c:a", "aac"]),
    }


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inputs")
    (root / "clip.vtt").write_text(CAPTIONS_VTT, encoding="utf-8")
    (root / "speech.vtt").write_text(SPEECH_VTT, encoding="utf-8")
    write_scores(root / "clip.scores.parquet")
    return {
        "vtt": root / "clip.vtt",
        "speech": root / "speech.vtt",
        "scores": root / "clip.scores.parquet",
    }


def score_matrix() -> np.ndarray:
    """(3 labels, 8 s) float32: beep high during 2–5 s, music a little everywhere, speech ~0."""
    rng = np.random.default_rng(7)
    probs = rng.uniform(0.0, 0.15, size=(3, N_SECONDS)).astype(np.float32)
    probs[0, 2:5] = [0.92, 0.97, 0.88]
    probs[1] += 0.2
    probs[2] *= 0.1
    return probs


def write_scores(path: Path, seconds: np.ndarray | None = None) -> Path:
    labels = [BEEP_MID, MUSIC_MID, SPEECH_MID]
    probs = score_matrix()
    seconds = np.arange(N_SECONDS, dtype=np.int32) if seconds is None else seconds
    columns = {"second": pa.array(seconds, type=pa.int32())}
    for row, mid in enumerate(labels):
        columns[mid] = pa.array(probs[row, seconds], type=pa.float32())
    table = pa.table(columns).replace_schema_metadata(
        {
            "labels": json.dumps(labels),
            "label_names": json.dumps(LABEL_NAMES),
            "caption_text": json.dumps({BEEP_MID: "[beeping]", MUSIC_MID: "[music]"}),
        }
    )
    pq.write_table(table, path)
    return path


# --- pure: captions and scores -----------------------------------------------------------------


def test_parse_vtt_gives_integer_milliseconds_and_skips_notes():
    text = (
        "\ufeffWEBVTT - sounds\n\nNOTE a note\nover two lines\n\n"
        "a-cue-id\n01:02:03.456 --> 01:02:05.000 line:0\n[dog barking]\n[music]\n\n"
        "59:59.999 --> 01:00:00.000\n[applause]\n"
    )
    assert parse_vtt(text) == [
        Cue(3_723_456, 3_725_000, "[dog barking]\n[music]"),
        Cue(3_599_999, 3_600_000, "[applause]"),
    ]


def test_parse_vtt_refuses_what_is_not_webvtt():
    with pytest.raises(PreviewInputError, match="WEBVTT"):
        parse_vtt("1\n00:00:01,000 --> 00:00:02,000\nan srt file\n")
    with pytest.raises(PreviewInputError, match="timestamp"):
        parse_vtt("WEBVTT\n\n00:00:01,000 --> 00:00:02,000\ncomma decimals\n")


def test_continued_and_stacked_captions_share_lanes():
    assert lane_key("[dog barking … continues]") == "[dog barking]"
    assert lane_key("[dog barking continues]") == "[dog barking]"
    cues = [
        Cue(0, 3000, "[dog barking]\n[music]"),
        Cue(3000, 7000, "[dog barking … continues]"),
    ]
    lanes, bars = cue_lanes(cues)
    assert lanes == ["[dog barking]", "[music]"]
    assert bars == [(0, 0, 3000), (1, 0, 3000), (0, 3000, 7000)]


def test_read_scores_keeps_the_labels_with_the_highest_peaks(tmp_path):
    path = write_scores(tmp_path / "s.parquet", seconds=np.array([0, 1, 2, 3, 4, 6], np.int32))
    grid = read_scores(path.read_bytes(), max_rows=2)
    assert grid.labels == (BEEP_MID, MUSIC_MID)
    assert grid.names == ("Beep, bleep", "Music")
    assert grid.total_labels == 3
    assert grid.probs.shape == (2, 7)  # seconds 0..6; second 5 is missing
    expected = score_matrix()
    np.testing.assert_allclose(grid.probs[0, [0, 1, 2, 3, 4, 6]], expected[0, [0, 1, 2, 3, 4, 6]])
    assert grid.probs[0, 5] == 0.0


def test_grid_payload_round_trips_to_bytes(inputs):
    grid = read_scores(inputs["scores"].read_bytes())
    payload = grid_payload(grid)
    raw = np.frombuffer(base64.b64decode(payload["probsB64"]), dtype=np.uint8)
    decoded = raw.reshape(len(payload["labels"]), payload["seconds"]) / 255.0
    np.testing.assert_allclose(decoded, grid.probs, atol=0.5 / 255 + 1e-6)


def test_read_scores_refuses_a_file_without_seconds(tmp_path):
    pq.write_table(pa.table({"x": [1.0]}), tmp_path / "bad.parquet")
    with pytest.raises(PreviewInputError, match="second"):
        read_scores((tmp_path / "bad.parquet").read_bytes())


# --- pure-ish: media probing with the real ffmpeg ----------------------------------------------


def test_parse_probe_ignores_cover_art():
    stderr = (
        "Input #0, mp3, from 'a.mp3':\n  Duration: 00:01:04.50, start: 0.025057, bitrate: 65 kb/s\n"
        "  Stream #0:0: Audio: mp3 (mp3float), 44100 Hz, mono, fltp, 64 kb/s\n"
        "  Stream #0:1: Video: mjpeg (Baseline), yuvj420p(pc), 64x64, 90k tbr (attached pic)\n"
    )
    probe = parse_probe(stderr)
    assert probe.containers == ("mp3",)
    assert probe.duration_s == 64.5
    assert probe.video_codecs == () and probe.audio_codecs == ("mp3",)
    assert is_browser_playable(probe)


def test_probe_tells_playable_from_unplayable_files(media):
    mp4, webm, avi = (probe_media(media[k]) for k in ("mp4", "webm", "avi"))
    assert mp4.audio_codecs == ("aac",) and "mp4" in mp4.containers
    assert webm.video_codecs == ("vp9",) and webm.audio_codecs == ("opus",)
    assert avi.video_codecs == ("mjpeg",) and avi.containers == ("avi",)
    assert mp4.duration_s == pytest.approx(N_SECONDS, abs=0.1)
    assert is_browser_playable(webm)
    assert is_browser_playable(mp4) == (mp4.video_codecs == ("h264",))
    assert not is_browser_playable(avi)


# --- pure: the page and the index as files -----------------------------------------------------


class _Collect(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _tags(page: Path) -> list[tuple[str, dict]]:
    parser = _Collect()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser.tags


def test_page_is_self_contained_and_embeds_both_tracks(media, inputs, tmp_path):
    title = "a </script><script>window.pwned=1</script> title"
    page = write_preview(
        media["webm"],
        inputs["vtt"],
        tmp_path / "out",
        scores_uri=inputs["scores"],
        speech_uri=inputs["speech"],
        title=title,
    )
    assert page == tmp_path / "out" / "clip.html"
    tags = _tags(page)
    (video,) = [a for t, a in tags if t == "video"]
    assert (page.parent / video["src"]).read_bytes() == media["webm"].read_bytes()  # copied
    tracks = {a["id"]: a for t, a in tags if t == "track"}
    assert tracks["sound-track"]["kind"] == "captions"
    assert tracks["speech-track"]["kind"] == "subtitles"
    for track_id, text in (("sound-track", CAPTIONS_VTT), ("speech-track", SPEECH_VTT)):
        prefix, b64 = tracks[track_id]["src"].split("base64,", 1)
        assert prefix.startswith("data:text/vtt")
        assert base64.b64decode(b64).decode("utf-8") == text
    source = page.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", source)  # nothing remote
    assert "url(http" not in source and "@import" not in source
    assert "<script>window.pwned" not in source  # the title cannot close the script
    data = json.loads(re.search(r'id="preview-data">(.*?)</script>', source, re.S).group(1))
    assert data["title"] == title
    assert data["grid"]["labels"][0] == BEEP_MID
    assert data["cues"] == [{"start": 2000, "end": 5000, "text": "[beeping]"}]
    assert data["lanes"] == ["[beeping]"]
    assert data["laneRows"] == [0]  # caption_text maps [beeping] to the Beep, bleep row


def test_link_instead_of_copy_points_back_to_the_source(media, inputs, tmp_path):
    page = write_preview(media["webm"], inputs["vtt"], tmp_path / "out", copy_video=False)
    (video,) = [a for t, a in _tags(page) if t == "video"]
    assert not (tmp_path / "out" / "clip.webm").exists()
    assert (page.parent / video["src"]).resolve() == media["webm"].resolve()


def test_an_unplayable_video_gets_a_webm_proxy(media, inputs, tmp_path):
    page = write_preview(media["avi"], inputs["vtt"], tmp_path / "out")
    (video,) = [a for t, a in _tags(page) if t == "video"]
    assert video["src"] == "clip" + PROXY_SUFFIX
    proxy = probe_media(page.parent / video["src"])
    assert proxy.video_codecs == ("vp9",) and proxy.audio_codecs == ("opus",)
    assert proxy.duration_s == pytest.approx(N_SECONDS, abs=0.1)
    assert is_browser_playable(proxy)
    assert not (tmp_path / "out" / "clip.avi").exists()


REPORT_ROWS = [
    {
        "input": "lib/a/clip.webm",
        "status": "captioned",
        "reason": None,
        "message": None,
        "output_vtt": "run/a/clip.vtt",
        "duration_s": 8.0,
        "cue_count": 1,
        "top_labels": [BEEP_MID, MUSIC_MID],
    },
    {
        "input": "lib/b/old.mp4",
        "status": "skipped",
        "reason": "done",
        "message": "outputs exist for this model bundle",
        "output_vtt": "run/b/old.vtt",
        "duration_s": 3725.4,
        "cue_count": 42,
        "top_labels": ["Music"],
    },
    {
        "input": "lib/c/broken.mp4",
        "status": "failed",
        "reason": "decode_error",
        "message": "moov atom not found",
        "output_vtt": None,
        "duration_s": None,
        "cue_count": None,
        "top_labels": [],
    },
]


def _index_rows(index: Path) -> list[list[str]]:
    text = index.read_text(encoding="utf-8")
    body = text.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    rows = re.findall(r"<tr>(.*?)</tr>", body, re.S)
    return [[re.sub(r"<[^>]+>", " ", c).split() for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)] for r in rows]  # fmt: skip


def test_run_index_lists_every_video_with_status_and_links(tmp_path):
    out = tmp_path / "previews"
    page = out / "a" / "clip.html"
    page.parent.mkdir(parents=True)
    page.write_text("<!doctype html>")
    index = write_run_index(REPORT_ROWS, out, {"lib/a/clip.webm": page})
    text = index.read_text(encoding="utf-8")
    assert "3 videos: 1 captioned, 1 skipped, 1 failed" in text
    rows = _index_rows(index)
    assert [r[0] for r in rows] == [["lib/a/clip.webm"], ["lib/b/old.mp4"], ["lib/c/broken.mp4"]]
    assert rows[0][1] == ["captioned"] and rows[0][3] == ["1"]
    assert rows[1][2] == ["1:02:05"] and rows[1][3] == ["42"]
    assert rows[2][1][:2] == ["failed", "decode_error"] and "moov" in rows[2][1]
    hrefs = [a["href"] for t, a in _tags(index) if t == "a"]
    assert "a/clip.html" in hrefs
    assert (out / "a/clip.html").exists()


def test_run_index_reads_the_report_parquet(tmp_path):
    pq.write_table(pa.Table.from_pylist(REPORT_ROWS), tmp_path / "report.parquet")
    index = write_run_index(tmp_path / "report.parquet", tmp_path / "out", {})
    assert len(_index_rows(index)) == 3


def make_run(tmp_path: Path, media: dict[str, Path], inputs: dict[str, Path]) -> Path:
    """A caption run folder as the caption stage writes it: outputs mirror the library tree."""
    lib, run = tmp_path / "lib", tmp_path / "run"
    (lib / "a").mkdir(parents=True)
    (run / "a").mkdir(parents=True)
    (run / "_report").mkdir()
    video = lib / "a" / "clip.webm"
    video.write_bytes(media["webm"].read_bytes())
    (run / "a" / "clip.vtt").write_text(CAPTIONS_VTT)
    (run / "a" / "clip.scores.parquet").write_bytes(inputs["scores"].read_bytes())
    (run / "a" / "gone.vtt").write_text(CAPTIONS_VTT)
    rows = [
        dict(REPORT_ROWS[0], input=str(video), output_vtt=str(run / "a" / "clip.vtt")),
        dict(
            REPORT_ROWS[0],
            input=str(lib / "a" / "gone.mp4"),
            output_vtt=str(run / "a" / "gone.vtt"),
        ),
        dict(REPORT_ROWS[2], input=str(lib / "c" / "broken.mp4")),
    ]
    pq.write_table(pa.Table.from_pylist(rows), run / "_report" / "report.parquet")
    return run


def test_run_previews_make_a_page_per_captioned_video_and_name_the_failures(
    media, inputs, tmp_path
):
    run = make_run(tmp_path, media, inputs)
    index = write_run_previews(run, tmp_path / "previews")
    page = tmp_path / "previews" / "a" / "clip.html"
    assert page.exists()
    (video,) = [a for t, a in _tags(page) if t == "video"]
    assert (page.parent / video["src"]).resolve() == (tmp_path / "lib/a/clip.webm").resolve()
    data = json.loads(
        re.search(r'id="preview-data">(.*?)</script>', page.read_text(), re.S).group(1)
    )
    assert data["grid"] is not None  # the scores beside the .vtt were found
    text = index.read_text()
    assert "no preview: PreviewMediaError: video not found" in text
    assert not (tmp_path / "previews" / "a" / "gone.html").exists()
    assert "a/clip.html" in [a["href"] for t, a in _tags(index) if t == "a"]


# --- in the browser ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    with chromium_browser() as b:
        yield b


def _wait_ready(page) -> None:
    page.wait_for_function(
        "window.__preview && window.__preview.drawn && window.__preview.media !== 'loading'",
        timeout=15_000,
    )


SEEK_AND_READ_CUES = """async ([t, trackIndex]) => {
  const v = document.getElementById("video");
  await new Promise((resolve) => { v.addEventListener("seeked", resolve, {once: true}); v.currentTime = t; });
  await new Promise((resolve) => requestAnimationFrame(() => resolve()));
  const track = v.textTracks[trackIndex];
  return {mode: track.mode, currentTime: v.currentTime,
          active: Array.from(track.activeCues || []).map((c) => c.text)};
}"""

NON_BACKGROUND_PIXELS = """() => {
  const c = document.getElementById("timeline"), g = window.__preview.geometry;
  const ctx = c.getContext("2d");
  const count = (x, y, w, h) => {
    const d = ctx.getImageData(x, y, w, h).data; let n = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i] < 250 || d[i + 1] < 250 || d[i + 2] < 250) n++;
    return {n: n, total: d.length / 4};
  };
  return {all: count(0, 0, c.width, c.height),
          heat: count(Math.ceil(g.left), Math.ceil(g.heatTop), Math.floor(g.width), c.height - Math.ceil(g.heatTop) - 2)};
}"""


def _click_timeline_at(page, seconds: float) -> None:
    box = page.locator("#timeline").bounding_box()
    x = page.evaluate("(t) => window.__preview.xForTime(t)", seconds)
    y = page.evaluate("() => window.__preview.geometry.heatTop + 3")
    page.mouse.click(box["x"] + x, box["y"] + y)


@pytest.mark.browser
@pytest.mark.parametrize("kind", ["mp4", "webm", "avi"])
def test_preview_plays_captions_and_draws_the_timeline(browser, media, inputs, tmp_path, kind):
    """mp4 (H.264/AAC) and webm play as they are; the avi plays through its WebM proxy."""
    out = write_preview(
        media[kind],
        inputs["vtt"],
        tmp_path / "out",
        scores_uri=inputs["scores"],
        speech_uri=inputs["speech"],
    )
    page = open_page(browser, out)
    _wait_ready(page)
    state = page.evaluate(
        "() => ({media: __preview.media, seconds: __preview.seconds, labels: __preview.labels,"
        " width: document.getElementById('video').videoWidth})"
    )
    assert state["media"] == "playable"
    assert state["width"] == 320  # the picture decodes, not only the sound
    assert state["seconds"] == N_SECONDS
    assert state["labels"] == [BEEP_MID, MUSIC_MID, SPEECH_MID]

    # the truth has the beep at 2–5 s: the sound track's active cue says so, and only then
    at3 = page.evaluate(SEEK_AND_READ_CUES, [3.0, 0])
    assert at3["mode"] in ("showing", "hidden")
    assert at3["active"] == ["[beeping]"]
    assert page.evaluate(SEEK_AND_READ_CUES, [6.5, 0])["active"] == []
    assert page.evaluate(SEEK_AND_READ_CUES, [1.0, 1])["active"] == ["Hello there"]

    pixels = page.evaluate(NON_BACKGROUND_PIXELS)
    assert pixels["all"]["n"] > 0.2 * pixels["all"]["total"]
    assert pixels["heat"]["n"] > 0.95 * pixels["heat"]["total"]  # every heat cell is coloured

    _click_timeline_at(page, 3.0)
    page.wait_for_function("Math.abs(document.getElementById('video').currentTime - 3.0) < 0.1")
    cursor_x = page.evaluate(
        "() => new DOMMatrix(getComputedStyle(document.getElementById('cursor')).transform).m41"
    )
    assert cursor_x == pytest.approx(page.evaluate("() => __preview.xForTime(3.0)"), abs=2)
    page.wait_for_function("document.getElementById('video').textTracks[0].activeCues.length === 1")

    page.evaluate(SEEK_AND_READ_CUES, [3.0, 0])
    page.wait_for_function("document.getElementById('video').readyState >= 3")
    page.mouse.move(0, 0)  # pointer off the timeline: the readout shows the position
    page.wait_for_timeout(800)  # let the seeked frame paint and the spinner fade
    assert page.locator("#readout").inner_text().startswith("at 0:03")
    shot = tmp_path / f"preview-{kind}.png"
    save_screenshot(
        page, shot, ARTIFACTS / ("preview.png" if kind == "mp4" else f"preview-{kind}.png")
    )
    assert shot.stat().st_size > 10_000
    assert page.js_errors == []


@pytest.mark.browser
def test_unplayable_video_keeps_captions_and_timeline_working(browser, media, inputs, tmp_path):
    out = write_preview(
        media["avi"],
        inputs["vtt"],
        tmp_path / "out",
        scores_uri=inputs["scores"],
        transcode="never",
    )
    page = open_page(browser, out)
    _wait_ready(page)
    assert page.evaluate("() => __preview.media") == "unplayable"
    assert page.locator("#media-message").is_visible()
    assert "cannot play" in page.locator("#media-message").inner_text()

    _click_timeline_at(page, 3.2)
    assert page.evaluate("() => __preview.currentTime()") == pytest.approx(3.2, abs=0.05)
    assert page.locator("#caption-box").inner_text() == "[beeping]"
    _click_timeline_at(page, 6.5)
    assert page.locator("#caption-box").inner_text().strip() == ""
    page.locator("#timeline-wrap").press("ArrowLeft")
    page.locator("#timeline-wrap").press("ArrowLeft")
    page.locator("#timeline-wrap").press("ArrowLeft")
    assert page.evaluate("() => __preview.currentTime()") == pytest.approx(3.5, abs=0.05)
    assert page.locator("#caption-box").inner_text() == "[beeping]"
    save_screenshot(page, tmp_path / "unplayable.png", ARTIFACTS / "preview-unplayable.png")
    assert page.js_errors == []


@pytest.mark.browser
def test_timeline_without_scores_shows_cue_lanes(browser, media, inputs, tmp_path):
    out = write_preview(media["webm"], inputs["vtt"], tmp_path / "out")
    page = open_page(browser, out)
    _wait_ready(page)
    assert page.evaluate("() => [__preview.labels, __preview.lanes]") == [[], ["[beeping]"]]
    # the cue bar of [beeping] is drawn from 2 s to 5 s in its lane, and nowhere else
    colour_at = """([t]) => {
      const g = __preview.geometry, y = g.laneTop + 9, x = Math.round(__preview.xForTime(t));
      return Array.from(document.getElementById("timeline").getContext("2d").getImageData(x, y, 1, 1).data);
    }"""
    assert page.evaluate(colour_at, [3.5])[:3] == [0xD9, 0x3F, 0x0B]
    assert page.evaluate(colour_at, [6.5])[:3] != [0xD9, 0x3F, 0x0B]
    assert page.evaluate(colour_at, [1.0])[:3] != [0xD9, 0x3F, 0x0B]
    assert page.js_errors == []


@pytest.mark.browser
def test_run_index_links_open_the_previews(browser, media, inputs, tmp_path):
    run = make_run(tmp_path, media, inputs)
    index = write_run_previews(run, tmp_path / "previews")
    page = open_page(browser, index)
    assert page.locator("#summary").inner_text() == "3 videos: 2 captioned, 0 skipped, 1 failed"
    page.locator("#filter").fill("decode_error")
    assert page.locator("#runs tbody tr:visible").count() == 1
    page.locator("#filter").fill("")
    save_screenshot(page, tmp_path / "index.png", ARTIFACTS / "preview-index.png")
    page.locator("a", has_text="clip.webm").click()
    _wait_ready(page)
    assert page.evaluate(SEEK_AND_READ_CUES, [3.0, 0])["active"] == ["[beeping]"]
    assert page.js_errors == []


@pytest.mark.browser
def test_audio_only_media_shows_the_captions_under_the_player(browser, media, inputs, tmp_path):
    out = write_preview(media["m4a"], inputs["vtt"], tmp_path / "out", scores_uri=inputs["scores"])
    page = open_page(browser, out)
    _wait_ready(page)
    assert page.evaluate("() => __preview.media") == "no-picture"
    assert page.evaluate(SEEK_AND_READ_CUES, [3.0, 0])["active"] == ["[beeping]"]
    page.wait_for_function("document.getElementById('caption-box').innerText === '[beeping]'")
    assert page.evaluate(SEEK_AND_READ_CUES, [6.5, 0])["active"] == []
    page.wait_for_function("document.getElementById('caption-box').innerText.trim() === ''")
    assert page.js_errors == []
