"""``evaluate-run`` (issue 12): a caption run's .vtt files against per-second truth from an
events CSV, on a hand-made run whose figures are computed by hand below."""

from __future__ import annotations

import html
import json
import re

import pytest
from click.testing import CliRunner

from sound_captions.caption.report import CaptionRun, VideoResult, write_report
from sound_captions.cli import main
from sound_captions.evaluate_run import evaluate_run

MUSIC, PIANO, BARK, MEOW, APPLAUSE = "/m/04rlf", "/m/05r5c", "/m/05tny_", "/m/07qrkrw", "/m/028ght"

VTT = """WEBVTT

NOTE sound-captions bundle=x settings=y input=1:2

00:00:00.000 --> 00:00:03.000 line:0
[piano music]

00:00:04.000 --> 00:00:05.000 line:0
[spaceship noises]

00:00:06.000 --> 00:00:07.000 line:0
[dog barking]

00:00:08.000 --> 00:00:09.000 line:0
[dog barking]

00:00:09.000 --> 00:00:10.000 line:0
[applause]
"""

# truth: music 0-4 s, a dog barking 6-8 s, a cat 8-9 s; seconds 4, 5 and 9 are silent; a hostile
# uncaptioned source and a hostile unusable row, which the page must show as text
HOSTILE = "<script>alert(1)"
TRUTH = (
    "source,onset_s,offset_s,label\nlib/a.mp4,0,4,Music\nlib/a.mp4,6,8,Bark\nlib/a.mp4,8,9,Meow\n"
    f"lib/{HOSTILE}.mp4,0,1,Music\nlib/a.mp4,1,2,{HOSTILE}\n"
)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def run(tmp_path):
    (tmp_path / "lib").mkdir()
    out = tmp_path / "captions"
    (out / "a.vtt").parent.mkdir(parents=True)
    (out / "a.vtt").write_text(VTT)
    results = [
        VideoResult(str(tmp_path / "lib" / "a.mp4"), "captioned", output_vtt=str(out / "a.vtt"), duration_s=10.0),
        VideoResult(str(tmp_path / "lib" / "broken.mp4"), "failed", "decode_error", "corrupt"),
    ]
    write_report(str(out), CaptionRun(results=results, wall_s=1.0, report_uri=""))
    (tmp_path / "truth.csv").write_text(TRUTH)
    return tmp_path


def test_a_known_run_scores_exactly_the_hand_computed_figures(run):
    report = evaluate_run(str(run / "captions"), str(run / "truth.csv"), out_dir=str(run / "eval"))
    # per second: truth {M} {M} {M} {M} {} {} {B} {B} {C} {}; captions {M} {M} {M} {} {} {} {B} {} {B} {A}
    # ([piano music] counts for truth Music; [spaceship noises] is no class)
    overall = report["overall"]
    assert (overall["n_tp"], overall["n_fp"], overall["n_fn"]) == (4, 2, 3)
    assert overall["precision"] == pytest.approx(4 / 6) and overall["recall"] == pytest.approx(4 / 7)
    assert overall["f_measure"] == pytest.approx(8 / 13)
    assert overall["error_rate"] == pytest.approx(4 / 7)  # s3, s7 deletions; s8 a substitution; s9 an insertion
    cw = report["class_wise"]
    assert (cw[MUSIC]["n_tp"], cw[MUSIC]["n_fn"], cw[MUSIC]["n_fp"]) == (3, 1, 0)
    assert (cw[BARK]["n_tp"], cw[BARK]["n_fn"], cw[BARK]["n_fp"]) == (1, 1, 1)
    assert (cw[MEOW]["n_fn"], cw[APPLAUSE]["n_fp"]) == (1, 1) and PIANO not in cw
    assert (report["silent_seconds"], report["false_caption_seconds_in_silence"]) == (3, 1)
    assert report["false_caption_seconds_per_hour_of_silence"] == pytest.approx(1200)
    assert (report["events"], report["events_captioned"]) == (3, 2)
    assert report["onset_error_s"]["mean"] == 0 and report["offset_error_s"]["mean"] == pytest.approx(1.0)
    assert report["confusion"] == [{"truth": MEOW, "captioned": BARK, "seconds": 1}]
    assert report["unknown_caption_texts"] == {"[spaceship noises]": 1}
    assert [v["input"].rsplit("/", 1)[-1] for v in report["videos"]] == ["a.mp4"]  # the failed input has no captions
    assert report["truth_failures"][0]["reason"] == "unknown_label"
    written = json.loads((run / "eval" / "report.json").read_text())
    assert written["overall"]["n_tp"] == 4 and written["page_uri"] == str(run / "eval" / "index.html")
    assert set(written["plots"]) == {"f1_per_class", "confusion"}


def test_the_out_folder_has_the_plots_and_a_self_contained_page(run):
    evaluate_run(str(run / "captions"), str(run / "truth.csv"), out_dir=str(run / "eval"))
    for name in ("f1_per_class.png", "confusion.png"):
        png = (run / "eval" / name).read_bytes()
        assert png.startswith(PNG_SIGNATURE) and len(png) > 5000, name
    page = (run / "eval" / "index.html").read_text()
    assert "<td>micro F1</td><td>0.615</td>" in page  # 8/13, as the page formats it
    assert all(f"<td>{name}</td>" in page for name in ("Music", "Bark", "Meow", "Applause"))  # the ontology's names
    links = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert len(links) == 2 and all(u.startswith("data:image/png;base64,") for u in links)  # nothing loaded
    assert "<script" not in page and "<link" not in page
    assert "&lt;script&gt;alert(1).mp4" in page  # the uncaptioned source, as text
    assert "unknown AudioSet label &#x27;&lt;script&gt;alert(1)&#x27;" in page  # the unusable row's message
    assert "[spaceship noises]" in page and html.escape(str(run / "truth.csv")) in page


def test_held_out_media_with_their_sdh_subtitles_are_the_same_truth(run):
    """The truth of the CSV above written as a viewer's SDH file beside the held-out medium."""
    (run / "lib" / "a.mp4").write_bytes(b"held out")
    (run / "lib" / "a.srt").write_text(
        "1\n00:00:00,000 --> 00:00:04,000\n♪ ♪\n\n2\n00:00:04,500 --> 00:00:05,500\nIs that a dog?\n\n"
        "3\n00:00:06,000 --> 00:00:08,000\n(barking)\n\n4\n00:00:08,000 --> 00:00:09,000\n[meows]\n"
    )
    from_csv = evaluate_run(str(run / "captions"), str(run / "truth.csv"))
    from_subtitles = evaluate_run(str(run / "captions"), str(run / "lib"))
    def counts(report):
        return {m: (c["n_tp"], c["n_fp"], c["n_fn"]) for m, c in {"all": report["overall"], **report["class_wise"]}.items()}

    assert counts(from_subtitles) == counts(from_csv) and from_csv["overall"]["n_tp"] == 4
    assert from_subtitles["truth_failures"] == [] and from_subtitles["truth"] == str(run / "lib")
    result = CliRunner().invoke(main, ["evaluate-run", str(run / "captions"), "--truth", str(run / "lib")])
    assert result.exit_code == 0 and "F1 0.615" in result.output
    result = CliRunner().invoke(main, ["evaluate-run", str(run / "captions"), "--truth", str(run / "lib" / "a.srt")])
    assert result.exit_code == 2 and "error: --truth:" in result.output and "a folder or s3:// prefix" in result.output


def test_the_cli_prints_the_summary_and_refuses_what_is_not_a_run(run):
    result = CliRunner().invoke(main, ["evaluate-run", str(run / "captions"), "--truth", str(run / "truth.csv")])
    assert result.exit_code == 0, result.output
    assert "F1 0.615" in result.output and "1 of 3 silent s (1200 per hour)" in result.output
    assert "wrote" not in result.output  # no --out, no files
    result = CliRunner().invoke(main, ["evaluate-run", str(run / "captions"), "--truth", str(run / "truth.csv"), "--out", str(run / "eval")])
    assert result.exit_code == 0, result.output
    for name in ("report.json", "f1_per_class.png", "confusion.png", "index.html"):
        assert f"wrote {run / 'eval' / name}\n" in result.output and (run / "eval" / name).is_file()
    result = CliRunner().invoke(main, ["evaluate-run", str(run / "lib"), "--truth", str(run / "truth.csv")])
    assert result.exit_code == 2 and "not the output folder of a caption run" in result.output


def test_truth_is_closed_upward_and_a_skipped_input_keeps_its_length(tmp_path):
    """Review of issue 12: a [piano music] caption over truth Piano is not a false Music second
    when the truth also names Music elsewhere; a rerun's skipped rows (no duration) are judged
    over the whole video, from its scores file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = tmp_path / "captions"
    out.mkdir()
    (out / "v.vtt").write_text("WEBVTT\n\n00:00:06.000 --> 00:00:08.000 line:0\n[piano music]\n\n00:00:11.000 --> 00:00:12.000 line:0\n[applause]\n")
    pq.write_table(pa.table({"second": list(range(12))}), out / "v.scores.parquet")
    write_report(str(out), CaptionRun(results=[VideoResult(str(tmp_path / "v.mp4"), "skipped", "up_to_date", output_vtt=str(out / "v.vtt"))], wall_s=0.0, report_uri=""))
    (tmp_path / "truth.csv").write_text("source,onset_s,offset_s,label\nv.mp4,0,4,Music\nv.mp4,6,8,Piano\n")
    report = evaluate_run(str(out), str(tmp_path / "truth.csv"), out_dir=str(tmp_path / "eval"))
    assert report["n_seconds"] == 12  # not 8, where the last event ends
    cw = report["class_wise"]
    assert (cw[MUSIC]["n_tp"], cw[MUSIC]["n_fp"], cw[MUSIC]["n_fn"]) == (2, 0, 4)
    assert (cw[PIANO]["n_tp"], cw[PIANO]["n_fp"]) == (2, 0)
    assert report["false_caption_seconds_in_silence"] == 1  # the applause at 11 s
    assert report["confusion"] == [] and (tmp_path / "eval" / "confusion.png").read_bytes().startswith(PNG_SIGNATURE)
    assert "no truth second was captioned as another class" in (tmp_path / "eval" / "index.html").read_text()
