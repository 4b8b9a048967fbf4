"""A caption run names the classes it captions with a text derived from the class name, and its
report lists the classes that can never be captioned (issue 10: no class dropped silently)."""

from __future__ import annotations

import json
import logging

import pyarrow.parquet as pq
import pytest
from caption_fixtures import tiny_bundle

from sound_captions.caption.pipeline import CaptionOptions, caption_library
from sound_captions.testing.media import make_media

pytestmark = [pytest.mark.ray]

BEEP, NOISE = "/m/02fs_r", "/m/0chx_"  # "Beep, bleep", "White noise"


def test_derived_text_is_captioned_and_named_and_exclusions_are_reported(ray_session, tmp_path, tmp_path_factory, caplog):
    model = tiny_bundle(tmp_path_factory.mktemp("bundle"))
    # A user vocabulary with no text for white noise that excludes beeps on purpose.
    vocabulary = tmp_path / "vocabulary.csv"
    vocabulary.write_text("mid,display_name,caption\n,Music,[music]\n,\"Beep, bleep\",-\n")
    make_media(tmp_path / "lib" / "clip.mp4", [("noise", 4), ("beep", 3), ("music", 4)], seed=7)

    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="sound_captions.caption.pipeline"):
        run = caption_library([str(tmp_path / "lib")], CaptionOptions(out=str(out), model=str(model), chunk_s=4, vocabulary=str(vocabulary)))
    assert [r.status for r in run.results] == ["captioned"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("'White noise'" in w and "[white noise]" in w for w in warnings), warnings
    assert not any("Beep" in w for w in warnings)  # excluded on purpose: reported, not warned

    vtt = (out / "clip.vtt").read_text()
    assert "[white noise]" in vtt and "[music]" in vtt
    assert "beep" not in vtt.lower()
    summary = (out / "_report" / "summary.txt").read_text()
    assert "classes that can never be captioned:" in summary and f"{BEEP}: Beep, bleep: excluded" in summary
    assert f"{NOISE}: [white noise]" in summary
    meta = pq.read_schema(out / "_report" / "report.parquet").metadata
    assert json.loads(meta[b"never_captioned"]) == {BEEP: "Beep, bleep: excluded"}
    assert json.loads(meta[b"derived_captions"]) == {NOISE: "[white noise]"}

