"""A rerun skips a video only when nothing that decides its captions changed (issue 13): the
bundle, the caption texts (``--vocabulary``), the post-processing options, and, with
``--merge-with-speech``, the combined track and the speech track it was made from. And one
video's failure after inference (post-processing, its speech track) fails that video alone."""

from __future__ import annotations

import pytest
import webvtt
from caption_fixtures import tiny_bundle

from sound_captions.caption import pipeline
from sound_captions.caption.pipeline import CaptionOptions, caption_library
from sound_captions.caption.postprocess import PostprocessConfig
from sound_captions.testing.media import make_media

pytestmark = [pytest.mark.ray]


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    root = tmp_path_factory.mktemp("lib")
    make_media(root / "long.mp4", [("beep", 3), ("music", 8), ("noise", 4)], seed=11)
    make_media(root / "short.mp4", [("noise", 3), ("beep", 3)], seed=12)
    return root


def _statuses(run) -> dict[str, tuple[str, str]]:
    return {r.input.rsplit("/", 1)[-1]: (r.status, r.reason) for r in run.results}


def test_a_rerun_captions_again_when_the_vocabulary_or_postprocessing_changes(ray_session, tmp_path, tmp_path_factory, library):
    model = str(tiny_bundle(tmp_path_factory.mktemp("bundle")))
    out = tmp_path / "out"

    def run(**kw):
        return _statuses(caption_library([str(library)], CaptionOptions(out=str(out), model=model, chunk_s=4, **kw)))

    assert run() == {"long.mp4": ("captioned", ""), "short.mp4": ("captioned", "")}
    assert run() == {"long.mp4": ("skipped", "up_to_date"), "short.mp4": ("skipped", "up_to_date")}

    vocabulary = tmp_path / "vocabulary.csv"
    vocabulary.write_text("mid,display_name,caption\n,Music,[tune playing]\n")
    assert set(run(vocabulary=str(vocabulary)).values()) == {("captioned", "")}
    assert "[tune playing]" in (out / "long.vtt").read_text()
    assert set(run(vocabulary=str(vocabulary)).values()) == {("skipped", "up_to_date")}

    # A cue-length rule the long music event breaks: captioned again, the cues now split.
    short_cues = PostprocessConfig(max_cue_s=2)
    assert set(run(vocabulary=str(vocabulary), postprocess=short_cues).values()) == {("captioned", "")}
    durations = [c.end_in_seconds - c.start_in_seconds for c in webvtt.from_string((out / "long.vtt").read_text()).captions]
    assert durations and max(durations) <= 2.0
    assert set(run(vocabulary=str(vocabulary), postprocess=short_cues).values()) == {("skipped", "up_to_date")}


def test_a_rerun_writes_a_newly_asked_for_or_stale_combined_track(ray_session, tmp_path, tmp_path_factory, library):
    model = str(tiny_bundle(tmp_path_factory.mktemp("bundle")))
    out, speech = tmp_path / "out", tmp_path / "speech"
    speech.mkdir()
    (speech / "long.srt").write_text("1\n00:00:00,500 --> 00:00:02,000\nHello there.\n")

    def run(**kw):
        return _statuses(caption_library([str(library)], CaptionOptions(out=str(out), model=model, chunk_s=4, **kw)))

    assert set(run().values()) == {("captioned", "")}
    assert not (out / "long.sdh.vtt").exists()
    # Now asked for: the video with a speech track is done again; the other one has none.
    assert run(merge_with_speech=str(speech)) == {"long.mp4": ("captioned", ""), "short.mp4": ("skipped", "up_to_date")}
    assert "Hello there." in (out / "long.sdh.vtt").read_text()
    assert set(run(merge_with_speech=str(speech)).values()) == {("skipped", "up_to_date")}
    # The speech track was corrected: the combined track is made again from it.
    (speech / "long.srt").write_text("1\n00:00:00,500 --> 00:00:02,000\nHello, there.\n")
    assert run(merge_with_speech=str(speech))["long.mp4"] == ("captioned", "")
    assert "Hello, there." in (out / "long.sdh.vtt").read_text()
    # An unparsable speech track fails its video alone, as a speech-track failure.
    (speech / "short.vtt").write_text("not a subtitle file\n")
    statuses = run(merge_with_speech=str(speech))
    assert statuses["short.mp4"] == ("failed", "speech_track")
    assert statuses["long.mp4"] == ("skipped", "up_to_date")
    # a speech track that is not UTF-8 (a cp1252 SRT) also fails its video alone, saying why
    (speech / "short.vtt").unlink()
    (speech / "short.srt").write_bytes("1\r\n00:00:00,500 --> 00:00:01,000\r\nCaf\u00e9 music\r\n".encode("cp1252"))
    run_ = caption_library([str(library)], CaptionOptions(out=str(out), model=model, chunk_s=4, merge_with_speech=str(speech)))
    failed = {r.input.rsplit("/", 1)[-1]: r for r in run_.results}["short.mp4"]
    assert (failed.status, failed.reason) == ("failed", "speech_track") and "UTF-8" in failed.message


def test_a_postprocessing_error_fails_that_video_alone(ray_session, tmp_path, tmp_path_factory, library, monkeypatch):
    model = str(tiny_bundle(tmp_path_factory.mktemp("bundle")))
    real = pipeline.scores_to_cues

    def failing_for_the_long_video(scores, *args, **kwargs):
        if len(scores) > 10:
            raise FloatingPointError("scores went NaN")
        return real(scores, *args, **kwargs)

    monkeypatch.setattr(pipeline, "scores_to_cues", failing_for_the_long_video)
    out = tmp_path / "out"
    run = caption_library([str(library)], CaptionOptions(out=str(out), model=model, chunk_s=4))
    assert _statuses(run) == {"long.mp4": ("failed", "postprocess_error"), "short.mp4": ("captioned", "")}
    assert "FloatingPointError: scores went NaN" in next(r.message for r in run.failed)
    assert not (out / "long.vtt").exists() and (out / "short.vtt").exists()
    assert "long.mp4: postprocess_error" in (out / "_report" / "summary.txt").read_text()
