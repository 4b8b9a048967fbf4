"""--merge-with-speech: speech cues kept as they are, sound cues at the top, no duplicates."""

from __future__ import annotations

import webvtt

from sound_captions.caption.postprocess import Cue
from sound_captions.caption.speech import find_speech_track, merge_tracks, read_speech_cues
from sound_captions.caption.style import TOP_SETTINGS

SPEECH_VTT = """WEBVTT

intro
00:00:01.000 --> 00:00:04.000
Where is everyone?

00:00:05.000 --> 00:00:08.000
[Dog barking] Quiet, Rex!

00:00:09.000 --> 00:00:11.000 line:0
(a caption placed at the top)
"""

SOUND = [
    Cue(0, 3000, "[music]", "/m/04rlf", 0.9),
    Cue(5000, 7000, "[dog barking]", "/m/05tny_", 0.9),  # the speech cue already says it
    Cue(7000, 8000, "[dog barking continues]", "/m/05tny_", 0.9),  # so does this
    Cue(8000, 12000, "[doorbell ringing]", "/m/03wwcy", 0.8),  # overlaps a top speech cue
]


def _by_text(text: str) -> dict[str, webvtt.Caption]:
    return {" ".join(c.lines): c for c in webvtt.from_string(text).captions}


def test_speech_kept_sound_added_at_top_without_duplicates(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "show.vtt").write_text(SPEECH_VTT)
    uri = find_speech_track(str(tmp_path), "a/show")
    assert uri and uri.endswith("show.vtt")
    assert find_speech_track(str(tmp_path), "a/other") is None
    merged = merge_tracks(read_speech_cues(uri), SOUND)
    cues = _by_text(merged)
    original = webvtt.from_string(SPEECH_VTT).captions
    for cue in original:  # speech cues unchanged
        got = cues[" ".join(cue.lines)]
        assert (got.start, got.end, got.identifier, str(got.settings or "")) == (cue.start, cue.end, cue.identifier, str(cue.settings or ""))
    assert str(cues["[music]"].settings) == TOP_SETTINGS
    assert "[dog barking]" not in cues and "[dog barking continues]" not in cues
    assert "line:-2" in str(cues["[doorbell ringing]"].settings)  # speech holds the top there
    starts = [c.start for c in webvtt.from_string(merged).captions]
    assert starts == sorted(starts)


def test_srt_speech_track(tmp_path):
    (tmp_path / "v.srt").write_text("1\n00:00:01,000 --> 00:00:02,500\nHello\n\n2\n00:00:03,000 --> 00:00:04,000\n[applause]\n")
    merged = merge_tracks(read_speech_cues(find_speech_track(str(tmp_path), "v")), [Cue(3000, 5000, "[applause]", "x", 1.0), Cue(0, 1000, "[music]", "m", 1)])
    assert [" ".join(c.lines) for c in webvtt.from_string(merged).captions] == ["[music]", "Hello", "[applause]"]
