"""WebVTT rendering and the caption style rules; the caption vocabulary."""

from __future__ import annotations

import pytest
import webvtt
from hypothesis import given
from hypothesis import strategies as st

from sound_captions.caption.cues import Cue
from sound_captions.caption.style import (
    TOP_SETTINGS,
    CaptionTextError,
    check_caption_text,
    wrap_caption,
)
from sound_captions.caption.vocabulary import CaptionVocabulary
from sound_captions.caption.vtt import format_timestamp, render_vtt, style_violations
from sound_captions.ontology import Ontology


def test_timestamps_from_integer_milliseconds():
    assert format_timestamp(59_999) == "00:00:59.999"
    assert format_timestamp(60_000) == "00:01:00.000"
    assert format_timestamp(3 * 3_600_000 + 5) == "03:00:00.005"
    with pytest.raises(ValueError):
        format_timestamp(-1)


@given(st.integers(0, 10 * 3_600_000))
def test_timestamps_round_trip_through_webvtt(ms):
    text = render_vtt([Cue(ms, ms + 1000, "[music]", "/m/04rlf", 0.9)])
    cue = webvtt.from_string(text).captions[0]
    assert cue.start == format_timestamp(ms)
    assert cue.end == format_timestamp(ms + 1000)


def test_rendered_file_parses_and_sits_at_the_top():
    cues = [Cue(0, 2000, "[dog barking]", "d", 0.9), Cue(1000, 3000, "[a very long description of a sound that wraps]", "x", 0.8)]
    text = render_vtt(cues)
    doc = webvtt.from_string(text)
    assert [c.settings if isinstance(c.settings, str) else str(c.settings) for c in doc.captions] == [TOP_SETTINGS] * 2
    assert doc.captions[1].lines == ["[a very long description of a sound that", "wraps]"]
    assert style_violations(text) == []


@pytest.mark.parametrize(
    ("cue_text", "settings", "problem"),
    [
        ("00:00:00.000 --> 00:00:00.500", TOP_SETTINGS, "shorter than"),
        ("00:00:00.000 --> 00:00:08.000", TOP_SETTINGS, "longer than"),
        ("00:00:00.000 --> 00:00:02.000", "", "not placed at the top"),
    ],
)
def test_style_violations_are_found(cue_text, settings, problem):
    text = f"WEBVTT\n\n{cue_text} {settings}\n[dog barking]\n"
    assert any(problem in p for p in style_violations(text))


@pytest.mark.parametrize("caption", ["Dog barking", "[Dog barking]", "[dog [barking]]", "[" + "x" * 90 + "]"])
def test_bad_caption_texts_are_refused(caption):
    with pytest.raises(CaptionTextError):
        check_caption_text(caption)
    assert style_violations(f"WEBVTT\n\n00:00:00.000 --> 00:00:02.000 {TOP_SETTINGS}\n{caption}\n")


def test_three_lines_is_a_violation():
    text = f"WEBVTT\n\n00:00:00.000 --> 00:00:02.000 {TOP_SETTINGS}\n[a\nb\nc]\n"
    assert any("lines" in p for p in style_violations(text))
    with pytest.raises(ValueError):
        wrap_caption("[" + " ".join(["word"] * 30) + "]")


def test_packaged_vocabulary_style_and_exclusions():
    ontology = Ontology.load()
    vocab = CaptionVocabulary.load()
    assert len(vocab.captions) > 50
    speech = ontology.descendants(ontology.resolve("Speech"))
    scene = ontology.descendants(ontology.resolve("Acoustic environment"))
    assert not (set(vocab.captions) & (speech | scene))
    for mid, text in vocab.captions.items():
        check_caption_text(text)
        words = text.strip("[]").split()
        assert not any(w.endswith("ed") and w not in ("bed", "speed") for w in words), (mid, text)  # no past tense
    assert vocab.caption(ontology.resolve("Bark")) == "[dog barking]"


def test_user_vocabulary_overrides_and_keeps_exclusions(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("mid,display_name,caption\n,Bark,[woofing]\n,Speech,[talking]\n,Music,[soft music]\n")
    vocab = CaptionVocabulary.load(str(path))
    ontology = Ontology.load()
    assert vocab.caption(ontology.resolve("Bark")) == "[woofing]"
    assert vocab.caption(ontology.resolve("Speech")) is None  # excluded unless allowed
    assert CaptionVocabulary.load(str(path), allow_excluded=True).caption(ontology.resolve("Speech")) == "[talking]"
    bad = tmp_path / "bad.csv"
    bad.write_text("mid,display_name,caption\n,Bark,Dog Barked\n")
    with pytest.raises(CaptionTextError):
        CaptionVocabulary.load(str(bad))
