"""Inputs whose names try to leave the output folder (issue 17), and listings that must account
for every entry: real S3 API (moto server), real Ray, real ffmpeg/yt-dlp from a loopback server.

Every test takes a picture of the files below its ``tmp_path`` before and after and checks that
each new file lies inside the folders the job was told to write to."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from caption_fixtures import tiny_bundle

from sound_captions import storage
from sound_captions.caption.pipeline import CaptionOptions, caption_library
from sound_captions.testing.media import KIND_LABELS, make_corrupt, make_media

PROBE_KEYS = ("videos/ok.wav", "videos/sub/../../../../../tmp/probe/escaped.wav", "videos/..%2F..%2Fx.wav")


@pytest.fixture(scope="module")
def bundle_path(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("bundle"))


def _options(out, bundle_path, **kw):
    return CaptionOptions(out=str(out), model=str(bundle_path), chunk_s=4, feature_batch_size=16, inference_batch_size=32, **kw)


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() or p.is_symlink()}


def _assert_new_files_inside(before: set[Path], root: Path, *allowed: Path) -> set[Path]:
    new = _files(root) - before
    outside = [p for p in new if not any(p.is_relative_to(a) for a in allowed)]
    assert not outside, outside
    return new


def _naive_target(out: Path, key: str) -> Path:
    """Where the key's ``..`` segments pointed before the fix."""
    return Path(os.path.normpath(out / (os.path.splitext(key.removeprefix("videos/"))[0] + ".vtt")))


@pytest.mark.ray
def test_probe_keys_write_nothing_outside_out_and_give_three_rows(ray_session, tmp_path, s3_bucket, bundle_path):
    audio = make_media(tmp_path / "src" / "ok.wav", [("beep", 3), ("noise", 2)], seed=5)
    s3 = storage.s3_client()
    for key in PROBE_KEYS:
        s3.upload_file(str(audio), s3_bucket, key)
    out = tmp_path / "probe" / "out" / "caps"
    escaped_target = _naive_target(out, PROBE_KEYS[1])
    assert not escaped_target.is_relative_to(out)  # the test means something: the key did escape
    before = _files(tmp_path)

    run = caption_library([f"s3://{s3_bucket}/videos/"], _options(out, bundle_path))

    _assert_new_files_inside(before, tmp_path, out)
    assert not escaped_target.exists() and not escaped_target.with_suffix(".scores.parquet").exists()
    uris = [f"s3://{s3_bucket}/{key}" for key in PROBE_KEYS]
    report = pq.read_table(out / "_report" / "report.parquet").to_pylist()
    assert len(report) == 3 and sorted(r["input"] for r in report) == sorted(uris)
    rows = {r["input"]: r for r in report}
    assert rows[uris[0]]["status"] == "captioned" and (out / "ok.vtt").is_file()
    assert (rows[uris[2]]["status"], rows[uris[2]]["reason"]) == ("skipped", "hidden")
    escaped = rows[uris[1]]  # captioned, at the documented encoded path inside out
    assert escaped["status"] == "captioned", escaped
    vtt = Path(escaped["output_vtt"])
    assert vtt == out / "sub/%2E%2E/%2E%2E/%2E%2E/%2E%2E/%2E%2E/tmp/probe/escaped.vtt" and vtt.is_file()
    assert vtt.with_name("escaped.scores.parquet").is_file()

    # The same run into S3: every key written lies below the output prefix.
    s3_out = f"s3://{s3_bucket}/captions/"
    run = caption_library([f"s3://{s3_bucket}/videos/"], _options(s3_out, bundle_path))
    assert len(run.results) == 3
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket)["Contents"]}
    written = keys - set(PROBE_KEYS)
    assert written and all(k.startswith("captions/") and "/../" not in k for k in written), written
    assert "captions/ok.vtt" in written


@pytest.mark.ray
def test_unreadable_entries_fail_alone_and_the_rest_is_captioned(ray_session, tmp_path, bundle_path):
    """Issue 13: a dangling symlink (or a FIFO, a hidden file, odd names) in a local library is
    one row of the report each; the other videos are captioned and the exit status is 1."""
    from click.testing import CliRunner

    from sound_captions.cli import main

    lib, out, elsewhere = tmp_path / "lib", tmp_path / "out", tmp_path / "elsewhere"
    make_media(lib / "good.wav", [("beep", 3), ("music", 3)], seed=31)
    make_media(lib / "we\\ird\x01name.wav", [("noise", 3)], seed=32)
    make_media(elsewhere / "linked.wav", [("music", 3)], seed=33)
    (lib / "link-out.wav").symlink_to(elsewhere / "linked.wav")  # a link leaving the library
    (lib / "dangling.wav").symlink_to(tmp_path / "no-such-file.wav")
    os.mkfifo(lib / "pipe.wav")
    make_media(lib / ".hidden" / "x.wav", [("beep", 2)], seed=34)
    before = _files(tmp_path)

    result = CliRunner().invoke(main, ["caption", "--model", str(bundle_path), "--out", str(out), "--chunk-s", "4", str(lib)])

    assert result.exit_code == 1, result.output
    _assert_new_files_inside(before, tmp_path, out)
    rows = {Path(r["input"]).name: r for r in pq.read_table(out / "_report" / "report.parquet").to_pylist()}
    assert set(rows) == {"good.wav", "we\\ird\x01name.wav", "link-out.wav", "dangling.wav", "pipe.wav", "x.wav"}
    status = {name: (r["status"], r["reason"]) for name, r in rows.items()}
    assert status["dangling.wav"] == ("failed", "unreadable") and "dangling symlink" in rows["dangling.wav"]["message"]
    assert status["pipe.wav"] == ("failed", "not_a_file")
    assert status["x.wav"] == ("skipped", "hidden")
    for name in ("good.wav", "we\\ird\x01name.wav", "link-out.wav"):
        assert status[name] == ("captioned", ""), rows[name]
    assert (out / "link-out.vtt").is_file() and (out / "we%5Cird%01name.vtt").is_file()
    assert "dangling.wav: unreadable" in result.output


def test_delete_wraps_s3_errors_and_local_writes_fsync(s3_server, tmp_path, monkeypatch):
    with pytest.raises(storage.StorageError, match="no such bucket"):
        storage.delete("s3://sc-no-such-bucket-here/x")
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    (tmp_path / "src.bin").write_bytes(b"x" * 100)
    storage.upload_file(tmp_path / "src.bin", str(tmp_path / "dst" / "copy.bin"))
    assert (tmp_path / "dst" / "copy.bin").read_bytes() == b"x" * 100 and synced
    assert not [p for p in (tmp_path / "dst").iterdir() if p.name != "copy.bin"]  # no temporary left


def test_a_report_path_cannot_place_a_preview_page_outside(tmp_path):
    """The preview pages take their place from the run report, which is checked, not trusted."""
    import pyarrow as pa

    from sound_captions.preview import write_run_previews

    run, pages = tmp_path / "run", tmp_path / "pages"
    (run / "_report").mkdir(parents=True)
    (tmp_path / "evil.vtt").write_text("WEBVTT\n\n00:00:00.000 --> 00:00:01.000\n[beep]\n")
    rows = [{"input": str(tmp_path / "v.wav"), "status": "captioned", "reason": "", "message": "", "output_vtt": f"{run}/../evil.vtt",
             "duration_s": 1.0, "cue_count": 1, "top_labels": [], "sdh_vtt": ""}]
    pq.write_table(pa.Table.from_pylist(rows), run / "_report" / "report.parquet")
    before = _files(tmp_path)
    index = write_run_previews(str(run), str(pages))
    _assert_new_files_inside(before, tmp_path, pages)
    assert "UnsafeNameError" in index.read_text()


@pytest.mark.ray
def test_dataset_build_keeps_downloads_and_shards_in_their_folders(ray_session, tmp_path):
    """Clip ids that name ``..``, ``.``, the staging folder or the archive, and manifest sources
    that point up and out: refused or failed with a reason; nothing is written elsewhere and the
    scratch folder (once deleted by a clip id of ``..``) survives."""
    from sound_captions.dataset.build import BuildOptions, build_dataset
    from sound_captions.dataset.shards import (
        load_dataset_info,
        read_failures,
        read_table,
        shard_uris,
    )
    from sound_captions.download import ARCHIVE_NAME, DownloadOptions
    from sound_captions.ontology import Ontology
    from sound_captions.sources.manifest import parse_manifest
    from sound_captions.sources.requests import ClipRequest
    from sound_captions.testing.http_server import MediaServer

    beep = KIND_LABELS["beep"]
    served, out, scratch = tmp_path / "served", tmp_path / "ds", tmp_path / "scratch"
    make_media(served / "good.mp4", [("beep", 3)], seed=41)
    (tmp_path / "manifests").mkdir()
    with MediaServer(served) as server:
        hostile_ids = ["..", ".", "../../../escape", ".part", "download-archive", "a/b", "x" * 201]
        requests = [ClipRequest("good_0", server.url("good.mp4"), 0.0, 3.0, (beep,), "test")]
        requests += [ClipRequest(cid, server.url("good.mp4"), 0.0, 3.0, (beep,), "test") for cid in hostile_ids]
        manifest = "\n".join(
            [
                "source,start_s,end_s,labels",
                f"{server.base_url}/..%2F..%2Fgood.mp4,0,3,{beep}",
                f"{server.base_url}/a/../../good.mp4,0,3,{beep}",
                f"../../../../../../../tmp/probe-{tmp_path.name}/x.wav,0,3,{beep}",
                f"yt:../../x,0,3,{beep}",
            ]
        )
        from_manifest, bad_rows = parse_manifest(manifest, Ontology.load(), base=str(tmp_path / "manifests"))
        assert not bad_rows and len(from_manifest) == 4
        requests += from_manifest
        before = _files(tmp_path)
        options = DownloadOptions(scratch_dir=str(scratch), retries=0, socket_timeout_s=10.0, source_url_template=server.base_url + "/{ytid}.mp4")
        build_dataset(requests, str(out), BuildOptions(seed=3, overwrite=True), download=options)

    _assert_new_files_inside(before, tmp_path, out, scratch)
    assert (scratch / ARCHIVE_NAME).is_file() and list(scratch.glob("good_0.*"))
    failures = {f["clip_id"]: f for f in read_failures(str(out)).to_pylist()}
    info = load_dataset_info(str(out))
    in_shards = {c for uri in shard_uris(str(out), info) for c in read_table(uri).column("clip_id").to_pylist()}
    for cid in hostile_ids:
        assert failures[cid]["reason"] == "unsafe_name", failures.get(cid)
        assert "not a safe file name" in failures[cid]["message"]
    assert "good_0" not in failures
    for request in from_manifest:
        assert not request.clip_id.startswith(".") and "/" not in request.clip_id
    # every request is accounted for exactly once: shard rows or a failure with a reason
    assert "good_0" in in_shards and not in_shards & set(failures)
    assert in_shards | set(failures) == {r.clip_id for r in requests}
    assert all(f["reason"] and f["message"] for f in failures.values())


def test_decode_failures_of_s3_objects_never_carry_the_presigned_credentials(s3_bucket, monkeypatch, tmp_path):
    """ffmpeg names its input in its errors; for an S3 object that is a presigned URL whose query
    holds the access key id, the signature and the session token: none of it reaches the report."""
    from sound_captions.caption.decode import decode_chunks
    from sound_captions.features import FeatureConfig

    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token-that-must-not-leak")
    storage._s3_client_for.cache_clear()
    try:
        storage.s3_client().put_object(Bucket=s3_bucket, Key="bad.mp4", Body=make_corrupt(tmp_path / "bad.mp4").read_bytes())
        for key in ("bad.mp4", "missing.mp4"):
            rows = list(decode_chunks({"video": [0], "uri": [f"s3://{s3_bucket}/{key}"]}, FeatureConfig().to_dict(), chunk_s=4))
            message = rows[-1]["message"][0]
            assert rows[-1]["kind"][0] == "error" and message.split(":")[0] in ("decode_error", "unreadable"), message
            for secret in ("session-token-that-must-not-leak", "Signature", "AWSAccessKeyId", "X-Amz-", os.environ["AWS_ACCESS_KEY_ID"]):
                assert secret not in message, message
    finally:
        storage._s3_client_for.cache_clear()
