"""Download stage against a loopback media server: real yt-dlp, real ffmpeg, generated media."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from sound_captions.download import (
    REASONS,
    DownloadArchive,
    DownloadOptions,
    DownloadSegments,
    HostPacer,
    backoff_delay_s,
    classify_download_error,
    completed_clip_ids,
    download_segment,
    download_segments,
    ensure_ffmpeg_on_path,
    needs_download,
    source_url,
)
from sound_captions.sources.requests import ClipRequest
from sound_captions.testing.http_server import MediaServer

SAMPLE_RATE_HZ = 16_000
LOW_HZ, HIGH_HZ, SWITCH_S, MEDIA_S = 440, 1000, 6, 12


# -- generated media (private helper until sound_captions.testing.media is merged) -------------


def _ffmpeg(*args: str) -> None:
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args],
        check=True,
    )


def _make_mp4(path: Path, *, audio: bool = True) -> Path:
    """12-s mp4: mpeg4 test pattern + AAC tone of 440 Hz for 6 s, then 1000 Hz for 6 s."""
    video = ["-f", "lavfi", "-i", f"testsrc=size=160x120:rate=10:duration={MEDIA_S}"]
    tone = f"0.5*sin(2*PI*if(lt(t,{SWITCH_S}),{LOW_HZ},{HIGH_HZ})*t)"
    sound = ["-f", "lavfi", "-i", f"aevalsrc='{tone}':s=44100:d={MEDIA_S}"] if audio else []
    codecs = ["-c:v", "mpeg4"] + (["-c:a", "aac"] if audio else [])
    _ffmpeg(*video, *sound, *codecs, str(path))
    return path


def _decode(path: str | Path) -> np.ndarray:
    """Media → 16 kHz mono float32 samples (ffmpeg to s16le)."""
    out = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path),
         "-f", "s16le", "-ac", "1", "-ar", str(SAMPLE_RATE_HZ), "-"],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    return np.frombuffer(out, dtype="<i2").astype(np.float32) / 32768.0


def _dominant_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum)) * SAMPLE_RATE_HZ / len(samples)


def _has_video_stream(path: str | Path) -> bool:
    probe = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
        capture_output=True, text=True,
    )  # fmt: skip
    return "Video:" in probe.stderr


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("media")
    _make_mp4(root / "tone.mp4")
    for name in ("tonetwice", "throttled2", "throttledforever", "goneagain", "slowpoke"):
        shutil.copyfile(root / "tone.mp4", root / f"{name}.mp4")
    _make_mp4(root / "silentfilm.mp4", audio=False)
    (root / "corrupt.mp4").write_bytes(random.Random(0).randbytes(150_000))
    return root


@pytest.fixture()
def server(media_dir: Path):
    with MediaServer(media_dir, retry_after_s=0) as srv:
        yield srv


def _options(tmp_path: Path, server: MediaServer, **kw) -> DownloadOptions:
    defaults = dict(
        scratch_dir=str(tmp_path / "scratch"),
        source_url_template=server.url_template,
        retries=3,
        backoff_base_s=0.01,
        backoff_max_s=0.05,
        socket_timeout_s=10.0,
    )
    return DownloadOptions(**(defaults | kw))


def _request(ytid: str, start_s: float | None = 1.0, end_s: float | None = 11.0) -> ClipRequest:
    start_ms = round((start_s or 0) * 1000)
    return ClipRequest(f"{ytid}_{start_ms}", f"yt:{ytid}", start_s, end_s, ("/m/09x0r",), "test")


# -- the segment -------------------------------------------------------------------------------


@pytest.mark.network
def test_only_the_requested_segment_is_downloaded_audio_only(tmp_path, server) -> None:
    outcome = download_segment(_request("tone", 4.0, 8.0), _options(tmp_path, server))
    assert outcome.ok, outcome
    assert (outcome.reason, outcome.attempts, outcome.from_cache) == (None, 1, False)
    assert outcome.path == str(tmp_path / "scratch" / "tone_4000.mp4")
    samples = _decode(outcome.path)
    assert abs(len(samples) - 4 * SAMPLE_RATE_HZ) <= 0.05 * SAMPLE_RATE_HZ  # within 50 ms
    # the cut comes from [4, 8) s of the source: 440 Hz before its 6-s switch, 1000 Hz after
    assert _dominant_hz(samples[:SAMPLE_RATE_HZ]) == pytest.approx(LOW_HZ, abs=5)
    assert _dominant_hz(samples[-SAMPLE_RATE_HZ:]) == pytest.approx(HIGH_HZ, abs=5)
    assert not _has_video_stream(outcome.path)
    ranged = [r for r in server.requests_log("/tone.mp4") if "Range" in r.headers]
    assert ranged, "ffmpeg should read the remote file with range requests"
    assert not list((tmp_path / "scratch" / ".part").iterdir())


@pytest.mark.network
def test_a_whole_file_request_is_audio_only_too(tmp_path, server) -> None:
    outcome = download_segment(_request("tone", None, None), _options(tmp_path, server))
    assert outcome.ok, outcome
    assert abs(len(_decode(outcome.path)) - MEDIA_S * SAMPLE_RATE_HZ) <= 800
    assert not _has_video_stream(outcome.path)


@pytest.mark.network
def test_two_segments_of_one_video_are_both_downloaded(tmp_path, server) -> None:
    # yt-dlp's own download_archive would skip the second one ("already recorded")
    options = _options(tmp_path, server)
    first = download_segment(_request("tone", 0.0, 3.0), options)
    second = download_segment(_request("tone", 7.0, 9.0), options)
    assert first.ok and second.ok and first.path != second.path
    assert abs(len(_decode(first.path)) - 3 * SAMPLE_RATE_HZ) <= 800
    assert abs(len(_decode(second.path)) - 2 * SAMPLE_RATE_HZ) <= 800


# -- every item accounted for ------------------------------------------------------------------


@pytest.mark.network
def test_every_item_ends_once_with_the_right_reason(tmp_path, server) -> None:
    server.missing("/goneagain.mp4")
    server.fail("/slowpoke.mp4", 503)
    server.throttle("/throttled2.mp4", times=2)
    server.throttle("/throttledforever.mp4", times=None)
    server.fail("/tonetwice.mp4", 410)
    requests = [
        _request("tone"),
        _request("nosuchvideo"),
        _request("goneagain"),
        _request("tonetwice"),
        _request("throttled2"),
        _request("throttledforever"),
        _request("slowpoke"),
        _request("corrupt"),
        _request("silentfilm"),
    ]
    options = _options(tmp_path, server, retries=3)
    outcomes = download_segments(requests, options, max_workers=4)

    assert [o.clip_id for o in outcomes] == [r.clip_id for r in requests]
    got = {o.clip_id.rsplit("_", 1)[0]: o for o in outcomes}
    expected = {
        "tone": None,
        "nosuchvideo": "unavailable",
        "goneagain": "unavailable",
        "tonetwice": "unavailable",
        "throttled2": None,
        "throttledforever": "throttled",
        "slowpoke": "other",
        "corrupt": "decode_error",
        "silentfilm": "no_audio",
    }
    assert {k: o.reason for k, o in got.items()} == expected
    for o in outcomes:
        assert o.ok == (o.reason is None) and (o.path is not None) == o.ok
        assert o.reason is None or o.reason in REASONS
        assert o.ok or o.message
    assert got["throttled2"].attempts == 3
    assert server.request_count("/throttled2.mp4") >= 3
    assert got["throttledforever"].attempts == 4  # first try + 3 retries
    assert server.request_count("/throttledforever.mp4") == 4
    assert "429" in got["throttledforever"].message
    assert got["slowpoke"].attempts == 4 and "503" in got["slowpoke"].message
    for permanent in ("nosuchvideo", "goneagain", "tonetwice", "corrupt", "silentfilm"):
        assert got[permanent].attempts == 1, permanent  # not retried
    assert "Invalid data found" in got["corrupt"].message
    assert "matches no streams" in got["silentfilm"].message
    assert completed_clip_ids(options) == {"tone_1000", "throttled2_1000"}
    for name in ("tone", "throttled2"):
        assert abs(len(_decode(got[name].path)) - 10 * SAMPLE_RATE_HZ) <= 800


# -- resumability ------------------------------------------------------------------------------


@pytest.mark.network
def test_rerun_downloads_nothing_it_already_has(tmp_path, server) -> None:
    options = _options(tmp_path, server)
    requests = [_request("tone", 0.0, 4.0), _request("tone", 5.0, 9.0), _request("throttled2")]
    first = download_segments(requests, options, max_workers=2)
    assert all(o.ok and not o.from_cache for o in first)
    before = server.request_count()

    again = download_segments(requests, options, max_workers=2)
    assert server.request_count() == before
    assert [o.path for o in again] == [o.path for o in first]
    assert all(o.ok and o.from_cache and o.attempts == 0 for o in again)


@pytest.mark.network
def test_a_killed_run_is_recovered(tmp_path, server) -> None:
    options = _options(tmp_path, server)
    scratch = Path(options.scratch_dir)
    # what a killed run leaves: a half-written staging file, a renamed file whose archive line
    # was never written, and a torn last archive line
    staging = scratch / ".part" / "tone_1000"
    staging.mkdir(parents=True)
    (staging / "tone_1000.mp4.part").write_bytes(b"\0" * 5000)
    (scratch / "tone_5000.mp4").write_bytes(b"not a finished download")
    archive = options.resolved_archive_path
    archive.write_text('{"clip_id": "tone_9000", "file": "tone_9000.mp4", "by')

    outcomes = download_segments(
        [_request("tone", 1.0, 3.0), _request("tone", 5.0, 6.0)], options, max_workers=2
    )
    assert all(o.ok and not o.from_cache and o.attempts == 1 for o in outcomes)
    assert abs(len(_decode(outcomes[0].path)) - 2 * SAMPLE_RATE_HZ) <= 800
    assert abs(len(_decode(outcomes[1].path)) - 1 * SAMPLE_RATE_HZ) <= 800
    assert not staging.exists()
    lines = archive.read_text().splitlines()
    assert len(lines) == 3 and lines[0].endswith('"by')  # torn line closed, never merged
    assert {json.loads(x)["clip_id"] for x in lines[1:]} == {"tone_1000", "tone_5000"}

    before = server.request_count()
    again = download_segments([_request("tone", 1.0, 3.0), _request("tone", 5.0, 6.0)], options)
    assert all(o.from_cache for o in again) and server.request_count() == before


_KILLABLE_RUN = """
import sys
from sound_captions.download import DownloadOptions, download_segments
from sound_captions.sources.requests import ClipRequest
options = DownloadOptions.from_dict({"scratch_dir": sys.argv[1], "source_url_template": sys.argv[2]})
requests = [ClipRequest(f"{y}_1000", f"yt:{y}", 1.0, 11.0, (), "t") for y in ("tone", "slowpoke")]
download_segments(requests, options, max_workers=1)
"""


@pytest.mark.network
def test_a_run_killed_mid_download_resumes_without_refetching(tmp_path, server) -> None:
    options = _options(tmp_path, server)
    server.slow("/slowpoke.mp4", bytes_per_s=20_000)
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLABLE_RUN, options.scratch_dir, options.source_url_template],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
        start_new_session=True,  # its own process group: ffmpeg children die with it
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
            server.request_count("/slowpoke.mp4") >= 2  # yt-dlp's request, then ffmpeg's
            and "tone_1000" in completed_clip_ids(options)
        ):
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert (Path(options.scratch_dir) / ".part" / "slowpoke_1000").exists()
    assert "slowpoke_1000" not in completed_clip_ids(options)

    server.slow("/slowpoke.mp4", None)
    tone_requests = server.request_count("/tone.mp4")
    outcomes = download_segments([_request("tone"), _request("slowpoke")], options)
    assert [(o.ok, o.from_cache) for o in outcomes] == [(True, True), (True, False)]
    assert server.request_count("/tone.mp4") == tone_requests
    assert abs(len(_decode(outcomes[1].path)) - 10 * SAMPLE_RATE_HZ) <= 800
    assert not (Path(options.scratch_dir) / ".part" / "slowpoke_1000").exists()


@pytest.mark.network
def test_an_archived_clip_whose_file_is_gone_is_downloaded_again(tmp_path, server) -> None:
    options = _options(tmp_path, server)
    first = download_segment(_request("tone", 2.0, 4.0), options)
    os.remove(first.path)
    second = download_segment(_request("tone", 2.0, 4.0), options)
    assert second.ok and not second.from_cache and Path(second.path).is_file()


# -- politeness and pass-through options -------------------------------------------------------


@pytest.mark.network
def test_attempts_to_one_host_are_paced(tmp_path, server) -> None:
    options = _options(tmp_path, server, per_host_min_interval_s=0.25, retries=0)
    requests = [_request(f"absent{i}") for i in range(4)]  # 404s: fast, so pacing dominates
    t0 = time.monotonic()
    outcomes = download_segments(requests, options, max_workers=4)
    elapsed = time.monotonic() - t0
    assert [o.reason for o in outcomes] == ["unavailable"] * 4
    assert elapsed >= 0.75 - 0.02


@pytest.mark.network
def test_proxy_and_cookies_are_passed_through(tmp_path, server) -> None:
    cookies = tmp_path / "cookies.txt"
    cookies.write_text(
        "# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t0\tsession\tabc123\n"
    )
    # through the proxy: the host name does not resolve, only the proxy can serve it
    via_proxy = _options(
        tmp_path, server, source_url_template="http://media.invalid/{ytid}.mp4",
        proxy=server.base_url, retries=0,
    )  # fmt: skip
    outcome = download_segment(_request("tone", 1.0, 2.0), via_proxy)
    assert outcome.ok, outcome
    assert server.request_count("/tone.mp4") >= 2  # yt-dlp's request and ffmpeg's

    with_cookies = _options(tmp_path / "b", server, cookies_file=str(cookies), retries=0)
    outcome = download_segment(_request("tone", 1.0, 2.0), with_cookies)
    assert outcome.ok, outcome
    sent = [r.headers.get("Cookie", "") for r in server.requests_log("/tone.mp4")]
    assert any("session=abc123" in c for c in sent)


@pytest.mark.network
def test_ray_adapter_adds_outcome_columns(tmp_path, server) -> None:
    requests = [_request("tone", 0.0, 2.0), _request("nosuchvideo")]
    batch = {k: np.array([r.to_row()[k] for r in requests], dtype=object) for k in
             requests[0].to_row()}  # fmt: skip
    out = DownloadSegments(_options(tmp_path, server).to_dict(), max_workers=2)(batch)
    assert out["clip_id"] == ["tone_0", "nosuchvideo_1000"]
    assert out["download_ok"] == [True, False]
    assert out["download_reason"] == [None, "unavailable"]
    assert out["labels"] == [["/m/09x0r"], ["/m/09x0r"]]


# -- pure parts --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("ERROR: [youtube] abc: Video unavailable", "unavailable"),
        ("ERROR: [youtube] abc: Video unavailable. This video is private", "private"),
        ("ERROR: [youtube] abc: Private video. Sign in if you've been granted access", "private"),
        ("ERROR: [youtube] abc: Video unavailable. This video has been removed by the uploader",
         "removed"),
        ("ERROR: [youtube] abc: Video unavailable. This video is no longer available because the "
         "YouTube account associated with this video has been terminated.", "removed"),
        ("ERROR: [youtube] abc: Video unavailable. This video is no longer available due to a "
         "copyright claim by X", "removed"),
        ("ERROR: [youtube] abc: Video unavailable. The uploader has not made this video "
         "available in your country", "geo_blocked"),
        ("ERROR: [youtube] abc: Sign in to confirm you're not a bot.", "throttled"),
        ("ERROR: unable to download video data: HTTP Error 429: Too Many Requests", "throttled"),
        ("ERROR: [generic] x: Unable to download webpage: HTTP Error 404: Not Found", "unavailable"),
        ("ERROR: [generic] 429: Unable to download webpage: HTTP Error 404: Not Found",
         "unavailable"),
        ("Error opening input: Server returned 404 Not Found", "unavailable"),
        ("Error opening input files: Invalid data found when processing input", "decode_error"),
        ("Stream map '' matches no streams.", "no_audio"),
        ("ERROR: Requested format is not available", "other"),
        ("ERROR: ffmpeg exited with code 1", "other"),
    ],
)  # fmt: skip
def test_error_messages_are_classified(message: str, reason: str) -> None:
    assert classify_download_error(message) == reason


def test_backoff_grows_exponentially_within_the_cap_and_jitter() -> None:
    options = DownloadOptions("s", backoff_base_s=1.0, backoff_max_s=10.0, jitter=0.5)
    rng = random.Random(0)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (9, 10.0)]:
        delays = [backoff_delay_s(attempt, options, rng) for _ in range(200)]
        assert min(delays) >= 0.5 * ceiling and max(delays) <= ceiling
        assert max(delays) - min(delays) > 0.2 * ceiling  # jitter actually spreads them
    assert backoff_delay_s(1, options, rng, retry_after_s=7.0) >= 7.0
    assert backoff_delay_s(1, options, rng, retry_after_s=60.0) == 10.0


def test_host_pacer_spaces_starts_per_host() -> None:
    now = [100.0]
    waits: list[float] = []

    def sleep(s: float) -> None:
        waits.append(s)

    pacer = HostPacer(0.5, clock=lambda: now[0])
    assert pacer.wait("a", sleep) == 0.0
    assert pacer.wait("a", sleep) == pytest.approx(0.5)
    assert pacer.wait("a", sleep) == pytest.approx(1.0)
    assert pacer.wait("b", sleep) == 0.0  # other hosts are not held up
    now[0] += 5.0
    assert pacer.wait("a", sleep) == 0.0
    assert waits == [pytest.approx(0.5), pytest.approx(1.0)]


def test_ensure_ffmpeg_on_path_is_idempotent() -> None:
    link = ensure_ffmpeg_on_path()
    assert ensure_ffmpeg_on_path() == link
    assert os.path.basename(link) == "ffmpeg"
    assert shutil.which("ffmpeg") == link
    assert os.path.realpath(link) == os.path.realpath(imageio_ffmpeg.get_ffmpeg_exe())
    assert os.environ["PATH"].split(os.pathsep).count(os.path.dirname(link)) == 1


def test_archive_ignores_torn_lines_and_sees_other_writers(tmp_path) -> None:
    path = tmp_path / "a.jsonl"
    a, b = DownloadArchive(path), DownloadArchive(path)
    a.record({"clip_id": "x", "file": "x.m4a", "bytes": 3})
    with open(path, "ab") as f:
        f.write(b'{"clip_id": "torn"')
    assert b.get("x") == {"clip_id": "x", "file": "x.m4a", "bytes": 3}
    b.record({"clip_id": "y", "file": "y.m4a", "bytes": 4})
    assert a.clip_ids() == {"x", "y"}


def test_sources_read_in_place_are_not_downloaded(tmp_path) -> None:
    options = DownloadOptions(str(tmp_path), source_url_template="http://m/{ytid}.mp4")
    local = ClipRequest("c", "s3://bucket/a.mp4", 0.0, 1.0, (), "manifest")
    assert not needs_download(local)
    outcome = download_segment(local, options)
    assert (outcome.ok, outcome.path, outcome.attempts) == (True, "s3://bucket/a.mp4", 0)
    assert source_url(_request("a-b_c"), options) == "http://m/a-b_c.mp4"
    assert needs_download(ClipRequest("d", "https://x/y.mp4", None, None, (), "m"))


def test_options_round_trip_and_validate() -> None:
    options = DownloadOptions("s", proxy="http://p:3128", retries=2)
    assert DownloadOptions.from_dict(options.to_dict()) == options
    with pytest.raises(ValueError):
        DownloadOptions("s", retries=-1)
    with pytest.raises(ValueError):
        DownloadOptions("s", jitter=2.0)
    with pytest.raises(ValueError, match="unknown download options"):
        DownloadOptions.from_dict({"scratch_dir": "s", "retires": 3})


# -- the test server itself --------------------------------------------------------------------


def _http(server: MediaServer, path: str, method: str = "GET", **headers: str):
    import urllib.error
    import urllib.request

    req = urllib.request.Request(server.url(path), method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


@pytest.mark.network
def test_media_server_answers_ranges_like_a_static_host(tmp_path) -> None:
    body = bytes(range(256)) * 4  # 1024 bytes
    root = tmp_path / "root"
    root.mkdir()
    (root / "f.bin").write_bytes(body)
    (tmp_path / "secret.bin").write_bytes(b"outside the served folder")
    with MediaServer(root, retry_after_s=3) as srv:
        status, headers, data = _http(srv, "f.bin")
        assert (status, data, headers["Accept-Ranges"]) == (200, body, "bytes")
        status, headers, data = _http(srv, "f.bin", Range="bytes=10-19")
        assert (status, data, headers["Content-Range"]) == (206, body[10:20], "bytes 10-19/1024")
        assert _http(srv, "f.bin", Range="bytes=1000-")[2] == body[1000:]
        assert _http(srv, "f.bin", Range="bytes=-24")[2] == body[-24:]
        assert _http(srv, "f.bin", Range="bytes=1000-5000")[2] == body[1000:]
        status, headers, _ = _http(srv, "f.bin", Range="bytes=2000-")
        assert (status, headers["Content-Range"]) == (416, "bytes */1024")
        status, headers, data = _http(srv, "f.bin", method="HEAD")
        assert (status, headers["Content-Length"], data) == (200, "1024", b"")
        assert _http(srv, "nope.bin")[0] == 404
        assert _http(srv, "../secret.bin")[0] == 404  # never serves outside its folder

        srv.throttle("/f.bin", times=2)
        first, second, third = (_http(srv, "f.bin") for _ in range(3))
        assert (first[0], second[0], third[0]) == (429, 429, 200)
        assert first[1]["Retry-After"] == "3"
        srv.missing("/f.bin")
        assert _http(srv, "f.bin")[0] == 404
        srv.fail("/f.bin", 503, times=1)
        assert _http(srv, "f.bin")[0] == 503
        assert srv.request_count("/f.bin") == 12
        assert srv.url_template == f"http://127.0.0.1:{srv.port}/{{ytid}}.mp4"
