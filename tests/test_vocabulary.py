"""Caption vocabulary: packaged texts follow the style; speech and scenes are not captioned."""

from __future__ import annotations

import pytest

from sound_captions.caption.vocabulary import (
    CaptionTextError,
    CaptionVocabulary,
    check_caption_text,
    excluded_mids,
)
from sound_captions.ontology import Ontology


def test_packaged_vocabulary_has_the_expected_captions():
    vocab = CaptionVocabulary.load()
    onto = Ontology.load()
    expected = {
        "Baby cry, infant cry": "[baby crying]", "Accordion": "[accordion music]", "Dog": "[dog barking]",
        "Bark": "[dog barking]", "Applause": "[applause]", "Laughter": "[laughter]", "Music": "[music]",
        "Telephone bell ringing": "[phone ringing]",
    }
    for name, text in expected.items():
        assert vocab.caption(onto.resolve(name)) == text
    assert len(vocab.captions) >= 80
    for text in vocab.captions.values():
        check_caption_text(text)


def test_speech_and_scene_classes_are_excluded():
    onto = Ontology.load()
    excluded = excluded_mids(onto)
    assert onto.resolve("Speech") in excluded and onto.resolve("Inside, small room") in excluded
    vocab = CaptionVocabulary.load(fallback_to_name=True)
    assert vocab.caption(onto.resolve("Male speech, man speaking")) is None
    assert vocab.caption(onto.resolve("Inside, small room")) is None
    assert vocab.caption(onto.resolve("Harpsichord")) == "[harpsichord]"  # fallback from the name
    assert CaptionVocabulary.load().caption(onto.resolve("Harpsichord")) is None


def test_user_file_overrides_and_is_checked(tmp_path):
    path = tmp_path / "vocab.csv"
    path.write_text("mid,display_name,caption\n,Dog,[dog yapping]\n/m/09x0r,,[talking]\n")
    vocab = CaptionVocabulary.load(str(path))
    assert vocab.caption("/m/0bt9lr") == "[dog yapping]"
    assert vocab.caption("/m/09x0r") is None  # speech stays excluded
    assert CaptionVocabulary.load(str(path), allow_excluded=True).caption("/m/09x0r") == "[talking]"
    bad = tmp_path / "bad.csv"
    bad.write_text("mid,caption\n/m/0bt9lr,Dog Barking\n")
    with pytest.raises(CaptionTextError):
        CaptionVocabulary.load(str(bad))


@pytest.mark.parametrize("text", ["[Dog barking]", "dog barking", "[dog barked]x", "[" + "a" * 90 + "]"])
def test_style_rules_reject_bad_texts(text):
    with pytest.raises(CaptionTextError):
        check_caption_text(text)
