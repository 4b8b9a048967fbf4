"""The human-readable run summary: one line per failed input, counts and hours."""

from __future__ import annotations

from sound_captions.caption.report import CaptionRun, VideoResult, summary_text


def test_summary_lists_each_failure_on_one_line():
    message = "ffmpeg could not decode the audio: [in#0] moov atom not found\nError opening input file x.mp4.\n" + "y" * 500
    run = CaptionRun(
        results=[
            VideoResult("a.mp4", "captioned", duration_s=1800.0, cue_count=3),
            VideoResult("b.mp4", "skipped", "up_to_date"),
            VideoResult("x.mp4", "failed", "decode_error", message),
        ],
        wall_s=60.0,
        report_uri="out/_report/report.parquet",
    )
    text = summary_text(run)
    assert "captioned: 1   skipped: 1   failed: 1" in text
    assert "media captioned: 0.500 h" in text and "30.0 h of media per wall-hour" in text
    failure_lines = [line for line in text.splitlines() if line.startswith("  x.mp4")]
    assert len(failure_lines) == 1 and "moov atom not found Error opening" in failure_lines[0]
    assert len(failure_lines[0]) < 340
