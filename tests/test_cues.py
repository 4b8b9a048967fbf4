"""One cue type and one subtitle reader (issue 13): WebVTT and SRT read into the same ``Cue``,
broken files refused with a reason, and the caption style's one home (``caption/style.py``)."""

from __future__ import annotations

import pytest

from sound_captions.caption import postprocess, speech, vtt
from sound_captions.caption.cues import Cue, CueFileError, read_cues
from sound_captions.caption.style import (
    CaptionTextError,
    base_caption,
    check_caption_text,
    continues_text,
    description_key,
    placed_at_top,
)
from sound_captions.preview import timeline


def test_webvtt_and_srt_read_into_the_same_cues():
    vtt_text = "WEBVTT\n\nNOTE made by hand\n\nintro\n00:00:00.500 --> 00:00:02.000 line:0 align:center\nHello there.\nSecond line.\n\n00:01:02.000 --> 00:01:03.250\n[door slams]\n"
    srt_text = "\ufeff1\r\n00:00:00,500 --> 00:00:02,000\r\nHello there.\r\nSecond line.\r\n\r\n2\r\n00:01:02,000 --> 00:01:03,250\r\n[door slams]\r\n"
    expected = [Cue(500, 2000, "Hello there.\nSecond line."), Cue(62_000, 63_250, "[door slams]")]
    assert read_cues(vtt_text) == expected == read_cues(srt_text, srt=True)
    first = read_cues(vtt_text)[0]
    assert (first.identifier, first.settings, first.lines) == ("intro", "line:0 align:center", ("Hello there.", "Second line."))
    assert read_cues(srt_text, srt=True)[1].identifier == "2"


@pytest.mark.parametrize(
    ("text", "srt", "why"),
    [
        ("1\n00:00:01,000 --> 00:00:02,000\nan srt file\n", False, "WEBVTT"),
        ("WEBVTT\n\n00:00:01,000 --> 00:00:02,000\ncomma decimals\n", False, "timestamp"),
        ("WEBVTT\n\n00:00:03.000 --> 00:00:02.000\nbackwards\n", False, "ends before"),
        ("WEBVTT\n\n00:00:01.000 -->\nno end\n", False, "without an end"),
    ],
)
def test_a_broken_subtitle_file_is_refused_with_its_reason(text, srt, why):
    with pytest.raises(CueFileError, match=why):
        read_cues(text, srt=srt)


def test_a_persons_subtitle_file_is_read_as_players_read_it():
    """What webvtt-py read before the one reader (review of issue 13): loose files still read."""
    lenient = {"strict": False}
    # a blank line inside SRT cue text; no blank line before the next cue; dot decimals; loose digits
    srt = "1\n00:00:01,000 --> 00:00:02,000\nfirst line\n\nsecond line\n2\n0:0:03.5 --> 00:00:04,25\n[door slams]\n"
    assert read_cues(srt, srt=True, **lenient) == [Cue(1000, 2000, "first line\nsecond line"), Cue(3500, 4250, "[door slams]")]
    assert read_cues(srt, srt=True, **lenient)[1].identifier == "2"
    # no blank line after the header; a line of spaces inside a cue; a broken cue among good ones
    vtt = "WEBVTT\n00:01.000 --> 00:02.000\nhello\n   \nthere\n\nbad --> id\n00:03.000 --> 00:04.000\n[music]\n\n00:09.000 --> 00:08.000\nbackwards\n"
    assert read_cues(vtt, **lenient) == [Cue(1000, 2000, "hello\nthere"), Cue(3000, 4000, "[music]")]
    with pytest.raises(CueFileError):
        read_cues(vtt)  # our own files are read strictly


def test_every_part_uses_the_one_cue_type():
    assert postprocess.Cue is timeline.Cue is Cue
    assert speech.read_speech_cues.__annotations__["return"] == "list[Cue]"
    assert vtt.style_violations("WEBVTT\n\n00:00:00.000 --> 00:00:00.500 line:0\n[music]\n") == ["cue  00:00:00.000-00:00:00.500: shorter than 1000 ms"]


def test_the_style_rules():
    assert continues_text("[dog barking]") == "[dog barking continues]"
    assert base_caption("[dog barking … continues]") == base_caption("[dog barking continues]") == "[dog barking]"
    assert description_key("[Dog  barks continues]") == "dog barks"
    assert placed_at_top("line:0 position:50%") and placed_at_top("line:10%") and not placed_at_top("line:-2") and not placed_at_top("")
    # a caption cannot smuggle a new line or WebVTT cue syntax into a cue
    for bad in ("[dog\nbarking]", "[a --> b]", "[Dog barking]", "dog barking", "[" + "x" * 90 + "]"):
        with pytest.raises(CaptionTextError):
            check_caption_text(bad)
    assert check_caption_text("[dog barking]") == "[dog barking]"
