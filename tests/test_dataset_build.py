"""Dataset build end to end: AudioSet CSV → selection → real yt-dlp downloads from a loopback media
server (404, 429 then OK, corrupt, no audio, too short) → Ray Data decode/features → shards in a
local folder and in a real S3 API (moto server); rerun and resume after a killed run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from sound_captions import storage
from sound_captions.dataset import shards
from sound_captions.dataset.build import (
    BuildOptions,
    DatasetExistsError,
    build_dataset,
    rows_per_shard,
)
from sound_captions.dataset.plan import plan_build
from sound_captions.download import ARCHIVE_NAME, DownloadOptions, completed_clip_ids
from sound_captions.testing.http_server import MediaServer
from sound_captions.testing.media import KIND_LABELS, make_corrupt, make_media

pytestmark = pytest.mark.ray

BEEP, MUSIC, NOISE = KIND_LABELS["beep"], KIND_LABELS["music"], KIND_LABELS["noise"]
ROOT = Path(__file__).parents[1]

# ytid: (media kind or fault, segment start, segment end, labels in the CSV)
ITEMS = {
    "beepA": ("beep", 0.0, 3.0, (BEEP,)),
    "musicA": ("music", 1.0, 3.0, (MUSIC,)),
    "bothA": ("beep+music", 0.0, 3.0, (BEEP, MUSIC)),
    "noiseA": ("noise", 0.0, 3.0, (NOISE,)),  # none of the chosen labels: an explicit negative
    "throttledA": ("beep", 0.0, 3.0, (MUSIC,)),  # 429 twice, then served
    "goneA": ("missing", 0.0, 3.0, (BEEP,)),  # 404
    "corruptA": ("corrupt", 0.0, 3.0, (BEEP,)),
    "silentA": ("no-audio", 0.0, 3.0, (MUSIC,)),
    "shortA": ("beep", 30.0, 33.0, (BEEP,)),  # the segment starts after the 3-s medium ends
}
EXPECTED_WINDOWS = {"beepA": 3, "musicA": 2, "bothA": 3, "noiseA": 3, "throttledA": 3}
EXPECTED_FAILURES = {"goneA": "unavailable", "corruptA": "decode_error", "silentA": "no_audio", "shortA": "too_short"}


def make_items(folder: Path, items: dict) -> None:
    for i, (ytid, (kind, *_)) in enumerate(sorted(items.items())):
        path = folder / f"{ytid}.mp4"
        if kind == "missing":
            continue
        if kind == "corrupt":
            make_corrupt(path, size_bytes=60_000, seed=i)
        elif kind == "no-audio":
            make_media(path, [("beep", 3)], audio=False)
        else:
            make_media(path, [(kind, 3)], seed=i)


def write_csv(path: Path, items: dict) -> Path:
    lines = ["# Segments csv created Sun Mar  5 10:54:31 2017", "# num_ytids=9, num_segs=9, num_pos_labels=9", "# YTID, start_seconds, end_seconds, positive_labels"]
    for ytid, (_, start, end, labels) in items.items():
        lines.append(f'{ytid}, {start:.3f}, {end:.3f}, "{",".join(labels)}"')
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("served")
    make_items(folder, ITEMS)
    with MediaServer(folder, retry_after_s=0) as server:
        yield server, write_csv(folder.parent / "segments.csv", ITEMS)


def plan_for(csv: Path):
    return plan_build(audioset_csvs=[str(csv)], labels=["Beep, bleep", "Music"], negatives=0.2, seed=3)


def download_options(scratch: Path, server: MediaServer) -> DownloadOptions:
    return DownloadOptions(
        scratch_dir=str(scratch), source_url_template=server.url_template, retries=3,
        backoff_base_s=0.01, backoff_max_s=0.05, socket_timeout_s=10.0,
    )  # fmt: skip


def run_build(served, out: str, scratch: Path, progress=None, **options):
    server, csv = served
    server.clear_faults()
    server.missing("/goneA.mp4")
    server.throttle("/throttledA.mp4", times=2)
    plan = plan_for(csv)
    report = build_dataset(
        plan.requests, out, BuildOptions(seed=3, fetch_concurrency=4, **options), source_failures=plan.failures,
        vocabulary=plan.vocabulary, sources=plan.sources, download=download_options(scratch, server), selection=plan.selection, progress=progress,
    )  # fmt: skip
    return plan, report


def read_dataset(root: str):
    info = shards.load_dataset_info(root)
    tables = [shards.read_table(u) for u in shards.shard_uris(root, info)]
    rows = Counter()
    labels, splits = {}, {}
    for t in tables:
        for clip_id, lab, split in zip(t.column("clip_id").to_pylist(), t.column("labels").to_pylist(), t.column("split").to_pylist(), strict=True):
            rows[clip_id] += 1
            labels.setdefault(clip_id, set()).add(tuple(lab))
            splits.setdefault(clip_id, set()).add(split)
    failures = shards.read_failures(root).to_pylist()
    return info, tables, rows, labels, splits, failures


def check_every_item_once(root: str, plan) -> None:
    info, tables, rows, labels, splits, failures = read_dataset(root)
    ytid = {r.clip_id: r.ytid for r in plan.requests}
    assert sorted(ytid.values()) == sorted(ITEMS)  # 8 positives + the one negative were chosen
    failed = {ytid[f["clip_id"]]: f["reason"] for f in failures}
    assert failed == EXPECTED_FAILURES
    assert all(f["message"] for f in failures)
    assert {ytid[c]: n for c, n in rows.items()} == EXPECTED_WINDOWS
    assert not set(rows) & {f["clip_id"] for f in failures}  # exactly once: shard rows or a failure
    assert len(rows) + len(failures) == len(plan.requests) == info.requested
    # shard labels are the chosen labels present; the negative carries none
    by_ytid = {ytid[c]: v for c, v in labels.items()}
    assert by_ytid["bothA"] == {(BEEP, MUSIC)} and by_ytid["beepA"] == {(BEEP,)}
    assert by_ytid["noiseA"] == {()}
    assert all(len(s) == 1 for s in splits.values())  # split by clip, never by window
    assert info.vocabulary == {BEEP: "Beep, bleep", MUSIC: "Music"}
    assert info.coverage[BEEP] == {"requested": 5, "obtained": 2}
    assert info.coverage[MUSIC] == {"requested": 4, "obtained": 3}
    assert info.obtained == 5 and info.failure_reasons == {r: 1 for r in EXPECTED_FAILURES.values()}
    assert info.counts["negatives"] == {"clips": 1, "windows": 3}
    assert info.selection["label_policy"] and info.selection["labels"] == [BEEP, MUSIC]
    for t in tables:
        spec = shards.spectrograms(t)
        assert spec.shape[1:] == info.feature_config.shape and np.isfinite(spec.astype(np.float32)).all()


@pytest.fixture(scope="module")
def local_build(ray_session, served, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "ds"
    scratch = out.parent / "scratch"
    started = time.monotonic()
    plan, report = run_build(served, str(out), scratch, target_shard_mb=0.033)  # ~4 rows per shard
    return out, scratch, plan, report, time.monotonic() - started


def test_local_build_accounts_for_every_item_once_with_the_right_reason(local_build, served) -> None:
    out, scratch, plan, report, _ = local_build
    check_every_item_once(str(out), plan)
    server, _ = served
    assert server.request_count("/throttledA.mp4") >= 3  # two 429s, then the download
    assert report.failure_reasons == {r: 1 for r in EXPECTED_FAILURES.values()}
    # the server cannot tell yt-dlp the duration, so the segment past the end is "downloaded"
    # (a file without samples) and found too short by the decoder
    downloaded = {r.clip_id for r in plan.requests if r.ytid in {*EXPECTED_WINDOWS, "shortA"}}
    assert completed_clip_ids(download_options(scratch, server)) == downloaded


def test_small_target_gives_several_whole_shards_and_nothing_else(local_build) -> None:
    out, *_ = local_build
    info = shards.load_dataset_info(str(out))
    per_shard = rows_per_shard(info.feature_config, 0.033)
    assert per_shard == 4
    assert len(info.shards) >= 3
    sizes = [pq.read_metadata(out / rel).num_rows for rel in info.shards]
    assert sum(sizes) == sum(EXPECTED_WINDOWS.values())
    assert all(0 < n <= 2 * per_shard for n in sizes)
    on_disk = sorted(p.relative_to(out).as_posix() for p in (out / shards.SHARD_DIR).iterdir())
    assert on_disk == sorted(info.shards)  # no temporary or partial file beside the shards


def test_rerun_of_a_finished_build_does_nothing_and_a_different_one_is_refused(local_build, served) -> None:
    out, scratch, plan, _, _ = local_build
    server, csv = served
    before = server.request_counts()
    digest = shards.load_dataset_info(str(out)).build_digest
    report = build_dataset(plan.requests, str(out), BuildOptions(seed=3), vocabulary=plan.vocabulary, download=download_options(scratch, server))
    assert report.skipped and report.n_clips == 5 and server.request_counts() == before
    assert shards.load_dataset_info(str(out)).build_digest == digest
    with pytest.raises(DatasetExistsError):
        build_dataset(plan.requests[:3], str(out), BuildOptions(seed=3), vocabulary=plan.vocabulary, download=download_options(scratch, server))


def test_build_into_s3(ray_session, served, s3_bucket, tmp_path, capsys) -> None:
    from sound_captions.dataset.progress import BuildProgress

    root = f"s3://{s3_bucket}/datasets/demo"
    with BuildProgress(len(ITEMS), interactive=False, interval_s=60) as meter:
        plan, report = run_build(served, root, tmp_path / "scratch", progress=meter)
    check_every_item_once(root, plan)
    assert "9/9 clips done (4 failed), 14 windows" in capsys.readouterr().err
    keys = sorted(o.uri for o in storage.list_files(root))
    info = shards.load_dataset_info(root)
    assert keys == sorted([storage.join(root, "dataset.json"), storage.join(root, "failures.parquet")] + [storage.join(root, s) for s in info.shards])
    assert len(info.shards) == 1  # default target (128 MB) holds all 14 windows


def test_stats_and_preview_commands(local_build, tmp_path) -> None:
    from sound_captions.cli import main

    out, *_ = local_build
    result = CliRunner().invoke(main, ["dataset", "stats", str(out)])
    assert result.exit_code == 0, result.output
    assert "coverage: 5 of 9 requested items obtained" in result.output
    assert "decode_error: 1" in result.output and "too_short: 1" in result.output and "unavailable: 1" in result.output
    assert "Beep, bleep" in result.output and "2/5" in result.output.replace(" ", "")
    stats = json.loads(CliRunner().invoke(main, ["dataset", "stats", str(out), "--json"]).output)
    assert stats["failure_reasons"]["no_audio"] == 1 and stats["obtained"] == 5

    png = tmp_path / "grid.png"
    result = CliRunner().invoke(main, ["dataset", "preview", str(out), "--out", str(png), "--per-label", "3"])
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    image = matplotlib.image.imread(png)
    assert image.shape[0] > 200 and image.std() > 0.05  # three rows of spectrograms, not a blank page
    assert "6 spectrograms" in result.output  # Beep: 2 clips, Music: 3, negatives: 1


# -- resume after a killed run ----------------------------------------------------------------


def cli_build(out: Path, csv: Path, server: MediaServer, scratch: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = str(ROOT)
    cmd = [
        sys.executable, "-m", "sound_captions.cli", "--num-cpus", "2", "dataset", "build", "--out", str(out),
        "--audioset-csv", str(csv), "--labels", "Beep, bleep;Music", "--seed", "3", "--source-url-template", server.url_template,
        "--retries", "2", "--backoff", "0.01", "--concurrency", "4", "--scratch", str(scratch), "--shard-mb", "0.13", "--no-progress",
    ]  # fmt: skip
    return subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_a_killed_build_resumes_without_downloading_again(tmp_path) -> None:
    items = {f"clip{i}": ("beep" if i % 2 else "music", 0.0, 2.0, (BEEP if i % 2 else MUSIC,)) for i in range(8)}
    (tmp_path / "media").mkdir()
    make_items(tmp_path / "media", items)
    csv = write_csv(tmp_path / "segments.csv", items)
    out, scratch = tmp_path / "ds", tmp_path / "scratch"
    archive = scratch / ARCHIVE_NAME
    with MediaServer(tmp_path / "media", retry_after_s=0) as server:
        for slow in ("clip6", "clip7"):
            server.slow(f"/{slow}.mp4", bytes_per_s=4_000)  # still downloading when the run is killed
        proc = cli_build(out, csv, server, scratch)
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and proc.poll() is None:
                if archive.exists() and len(archive.read_text().splitlines()) >= 3:
                    break
                time.sleep(0.1)
            assert proc.poll() is None, f"the build ended before it could be killed:\n{proc.stdout.read()}"
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        assert not (out / shards.DATASET_JSON).exists()
        done = {json.loads(line)["clip_id"] for line in archive.read_text().splitlines()}
        assert 3 <= len(done) < 8
        counts = {c: server.request_count(f"/{c.rsplit('_', 1)[0]}.mp4") for c in done}
        # what a crash may leave in the output: a shard no dataset.json lists
        (out / shards.SHARD_DIR).mkdir(parents=True, exist_ok=True)
        (out / shards.SHARD_DIR / "part-0000orphan0000.parquet").write_bytes(b"PAR1 half a shard")

        server.clear_faults()
        proc = cli_build(out, csv, server, scratch)
        output, _ = proc.communicate(timeout=240)
        assert proc.returncode == 0, output
        assert {c: server.request_count(f"/{c.rsplit('_', 1)[0]}.mp4") for c in done} == counts  # nothing fetched twice
        info, _, rows, _, _, failures = read_dataset(str(out))
        assert failures == [] and len(rows) == 8 and set(rows.values()) == {2}
        on_disk = sorted(p.relative_to(out).as_posix() for p in (out / shards.SHARD_DIR).iterdir())
        assert on_disk == sorted(info.shards)  # the orphan is gone, no row twice
        assert len(completed_clip_ids(DownloadOptions(scratch_dir=str(scratch)))) == 8
