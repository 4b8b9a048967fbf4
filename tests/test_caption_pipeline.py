"""The caption job end to end on Ray: a generated library from a local folder, from S3 (moto)
and from URLs (loopback server), with bad inputs; reruns skip finished videos; a changed video
is captioned again."""

from __future__ import annotations

import time

import pyarrow.parquet as pq
import pytest
import webvtt
from caption_fixtures import BAD, LIBRARY, agreement, make_library, tiny_bundle

from sound_captions import storage
from sound_captions.bundle import load_bundle
from sound_captions.caption.pipeline import CaptionOptions, caption_library, inference_cpus
from sound_captions.caption.vtt import style_violations
from sound_captions.testing.http_server import MediaServer
from sound_captions.testing.media import make_corrupt, make_media, per_second_truth

pytestmark = [pytest.mark.ray]


@pytest.fixture(scope="module")
def bundle_path(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("bundle"))


def _by_input(run):
    return {r.input: r for r in run.results}


def _options(out, bundle_path, **kw):
    return CaptionOptions(out=str(out), model=str(bundle_path), chunk_s=4, feature_batch_size=16, inference_batch_size=32, **kw)


def test_local_library_bad_inputs_rerun_and_change(ray_session, tmp_path, bundle_path):
    lib, out = tmp_path / "lib", tmp_path / "out"
    truth = make_library(lib)
    caption_text = load_bundle(str(bundle_path)).caption_text

    run = caption_library([str(lib)], _options(out, bundle_path))
    results = _by_input(run)
    assert len(results) == len(LIBRARY) + len(BAD)
    for rel, (suffix, _) in LIBRARY.items():
        r = results[str(lib / (rel + suffix))]
        assert r.status == "captioned", r
        assert r.duration_s == len(truth[rel])
        vtt_text = (out / (rel + ".vtt")).read_text()
        webvtt.from_string(vtt_text)  # parses
        assert style_violations(vtt_text) == []
        assert agreement(vtt_text, truth[rel], caption_text) >= 0.85, (rel, vtt_text)
        scores = pq.read_table(out / (rel + ".scores.parquet"))
        assert scores.num_rows == len(truth[rel])
        assert scores.column("second").to_pylist() == list(range(len(truth[rel])))
        assert set(scores.column_names) == {"second", *caption_text}
    for rel, reason in BAD.items():
        r = results[str(lib / (rel + ".mp4"))]
        assert (r.status, r.reason) == ("failed", reason), r
        assert not (out / (rel + ".vtt")).exists()

    report = pq.read_table(out / "_report" / "report.parquet").to_pylist()
    assert {(row["input"], row["status"]) for row in report} == {(r.input, r.status) for r in run.results}
    summary = (out / "_report" / "summary.txt").read_text()
    assert f"captioned: {len(LIBRARY)}" in summary and f"failed: {len(BAD)}" in summary
    assert "no_audio" in summary and "throughput" in summary

    # A rerun skips every finished video and touches none of their outputs.
    vtt_one = out / "a/one.vtt"
    mtime = vtt_one.stat().st_mtime_ns
    rerun = _by_input(caption_library([str(lib)], _options(out, bundle_path)))
    assert {rerun[str(lib / (rel + s))].status for rel, (s, _) in LIBRARY.items()} == {"skipped"}
    assert vtt_one.stat().st_mtime_ns == mtime
    assert {rerun[str(lib / (rel + ".mp4"))].status for rel in BAD} == {"failed"}

    # Change one video (new content, so new size/mtime): only it is captioned again.
    time.sleep(0.01)
    new_segments = [("noise", 6), ("silence", 2), ("beep", 3)]
    make_media(lib / "a/one.mp4", new_segments, seed=7)
    changed = _by_input(caption_library([str(lib)], _options(out, bundle_path)))
    assert changed[str(lib / "a/one.mp4")].status == "captioned"
    assert changed[str(lib / "a/deeper/two.mkv")].status == "skipped"
    assert agreement(vtt_one.read_text(), per_second_truth(new_segments), caption_text) >= 0.85

    # --force captions again; --merge-with-speech adds the combined track where speech exists.
    speech = tmp_path / "speech"
    speech.mkdir()
    (speech / "three.srt").write_text("1\n00:00:00,500 --> 00:00:02,000\nHello there.\n")
    forced = _by_input(caption_library([str(lib / "three.m4a")], _options(out, bundle_path, force=True, merge_with_speech=str(speech))))
    assert forced[str(lib / "three.m4a")].status == "captioned"
    sdh = webvtt.from_string((out / "three.sdh.vtt").read_text()).captions
    assert forced[str(lib / "three.m4a")].sdh_vtt == str(out / "three.sdh.vtt")
    assert [c.lines for c in sdh if "[" not in c.text] == [["Hello there."]]
    assert len(sdh) == 1 + len(webvtt.from_string((out / "three.vtt").read_text()).captions)


@pytest.mark.network
def test_s3_library_and_url_list(ray_session, tmp_path, s3_bucket, bundle_path):
    lib = tmp_path / "lib"
    truth = make_library(lib, bad=False, seed=300)
    s3 = storage.s3_client()
    for rel, (suffix, _) in LIBRARY.items():
        s3.upload_file(str(lib / (rel + suffix)), s3_bucket, f"videos/{rel}{suffix}")
    s3.put_object(Bucket=s3_bucket, Key="videos/bad/empty.mp4", Body=b"")
    s3.put_object(Bucket=s3_bucket, Key="videos/bad/corrupt.mp4", Body=make_corrupt(tmp_path / "corrupt.mp4").read_bytes())
    prefix, out = f"s3://{s3_bucket}/videos/", f"s3://{s3_bucket}/captions"

    # A URL list: one good URL, one 404, and one S3 key that does not exist.
    serve = tmp_path / "serve"
    make_media(serve / "clip.mp4", [("beep", 4), ("music", 4)], seed=9)
    with MediaServer(serve) as server:
        server.missing("/gone.mp4")
        good_url, gone_url = server.url("clip.mp4"), server.url("gone.mp4")
        urls = tmp_path / "inputs.txt"
        urls.write_text(f"# nightly\n{server.url('clip.mp4')}\n{server.url('gone.mp4')}\ns3://{s3_bucket}/videos/nope.mp4\n")
        run = caption_library([prefix, str(urls)], _options(out, bundle_path))
        results = _by_input(run)
        assert server.request_count("/clip.mp4") >= 1

    caption_text = load_bundle(str(bundle_path)).caption_text
    for rel, (suffix, _) in LIBRARY.items():
        r = results[f"{prefix}{rel}{suffix}"]
        assert r.status == "captioned", r
        vtt_text = storage.read_text(f"{out}/{rel}.vtt")
        assert style_violations(vtt_text) == []
        assert agreement(vtt_text, truth[rel], caption_text) >= 0.85
        assert pq.read_table(storage.local_copy(f"{out}/{rel}.scores.parquet").__enter__()).num_rows == len(truth[rel])
    assert (results[f"{prefix}bad/empty.mp4"].status, results[f"{prefix}bad/empty.mp4"].reason) == ("failed", "empty")
    assert results[f"{prefix}bad/corrupt.mp4"].reason == "decode_error"
    url_ok = results[good_url]
    assert url_ok.status == "captioned", url_ok
    assert agreement(storage.read_text(url_ok.output_vtt), per_second_truth([("beep", 4), ("music", 4)]), caption_text) >= 0.85
    assert (results[gone_url].status, results[gone_url].reason) == ("failed", "unavailable")
    assert (results[f"s3://{s3_bucket}/videos/nope.mp4"].reason) == "unreadable"
    assert storage.exists(f"{out}/_report/report.parquet") and storage.exists(f"{out}/_report/summary.txt")

    # Rerun on S3: everything done is skipped; an overwritten object (new ETag) is redone.
    again = _by_input(caption_library([prefix], _options(out, bundle_path)))
    assert {again[f"{prefix}{rel}{s}"].status for rel, (s, _) in LIBRARY.items()} == {"skipped"}
    make_media(tmp_path / "new.mkv", [("beep", 5), ("noise", 5)], seed=11)
    s3.upload_file(str(tmp_path / "new.mkv"), s3_bucket, "videos/a/deeper/two.mkv")
    changed = _by_input(caption_library([prefix], _options(out, bundle_path)))
    assert changed[f"{prefix}a/deeper/two.mkv"].status == "captioned"
    assert changed[f"{prefix}a/one.mp4"].status == "skipped"


def test_unreadable_s3_object_fails_alone(ray_session, tmp_path, s3_bucket, bundle_path):
    """An object listed but unreadable at decode time (deleted after listing) fails with
    'unreadable' while the others are captioned."""
    from sound_captions.caption.decode import decode_chunks
    from sound_captions.features import FeatureConfig

    rows = list(decode_chunks({"video": [0], "uri": [f"s3://{s3_bucket}/missing.mp4"]}, FeatureConfig().to_dict(), chunk_s=4))
    assert len(rows) == 1 and rows[0]["kind"][0] == "error"
    assert rows[0]["message"][0].startswith("unreadable: ")


def test_cli_exit_status_says_whether_any_input_failed(ray_session, tmp_path, bundle_path):
    from click.testing import CliRunner

    from sound_captions.cli import main
    from sound_captions.testing.media import make_corrupt

    good = make_media(tmp_path / "lib" / "good.mp4", [("beep", 3), ("noise", 3)], seed=21)
    bad = make_corrupt(tmp_path / "lib" / "bad.mp4")
    out = tmp_path / "out"
    args = ["caption", "--model", str(bundle_path), "--out", str(out), "--chunk-s", "4", "--smoothing", "viterbi"]
    first = CliRunner().invoke(main, [*args, str(good), str(bad)])
    assert first.exit_code == 1, first.output
    assert "captioned: 1" in first.output and "failed: 1" in first.output and "decode_error" in first.output
    again = CliRunner().invoke(main, [*args, str(good)])  # already done: skipped, nothing failed
    assert again.exit_code == 0, again.output
    assert "skipped: 1" in again.output


def _node(cpus, alive=True):
    return {"Alive": alive, "Resources": {"CPU": float(cpus)}}


def test_inference_actor_gets_the_cpus_beside_decode_and_features(ray_session, tmp_path):
    import ray

    unset = CaptionOptions(out=str(tmp_path), model="unused")
    assert inference_cpus(unset, ray.nodes()) == 2.0  # this session's 4 CPUs, less decode and features
    assert inference_cpus(unset, [_node(16)]) == 8.0  # at most 8 torch threads
    assert inference_cpus(unset, [_node(4), _node(4)]) == 4.0  # within one node: an actor lives on one
    assert inference_cpus(unset, [_node(8), _node(64, alive=False)]) == 6.0  # dead nodes count nothing
    assert inference_cpus(unset, [_node(2)]) == 1.0  # never below one
    assert inference_cpus(CaptionOptions(out=str(tmp_path), model="unused", gpus_per_actor=1), [_node(16)]) == 1.0
    assert inference_cpus(CaptionOptions(out=str(tmp_path), model="unused", cpus_per_actor=0.5), [_node(16)]) == 0.5
