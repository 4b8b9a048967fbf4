"""The packaged AudioSet ontology: lookups by name or mid, and the class hierarchy."""

from __future__ import annotations

import pytest

from sound_captions.ontology import Ontology, UnknownLabelError


@pytest.fixture(scope="module")
def onto() -> Ontology:
    return Ontology.load()


def test_packaged_metadata_is_complete(onto):
    assert len(onto.classes) == 632
    assert len(onto.labelled_mids) == 527
    assert onto.labelled_mids[0] == "/m/09x0r"  # index 0: Speech


@pytest.mark.parametrize("text", ["Dog", "dog", "  DOG ", "/m/0bt9lr"])
def test_resolve_by_name_or_mid(onto, text):
    assert onto.resolve(text) == "/m/0bt9lr"


def test_names_with_commas_resolve(onto):
    mid = onto.resolve("Baby cry, infant cry")
    assert onto.name(mid) == "Baby cry, infant cry"


def test_unknown_label_is_a_clear_error(onto):
    with pytest.raises(UnknownLabelError, match="unknown AudioSet label 'Dgo'"):
        onto.resolve("Dgo")
    with pytest.raises(UnknownLabelError):
        onto.name("/m/nothing")


def test_descendants_follow_the_hierarchy(onto):
    dog = onto.descendants("Dog")
    assert onto.resolve("Bark") in dog and onto.resolve("Dog") in dog
    assert onto.resolve("Dog") not in onto.descendants("Dog", include_self=False)
    assert onto.resolve("Meow") not in dog
    music = onto.descendants("Music")
    assert onto.resolve("Accordion") in music and len(music) > 100
