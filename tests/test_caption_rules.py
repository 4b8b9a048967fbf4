"""Caption rules of issue 10: the most specific class per second, no trained class dropped
silently, thresholds that hold on small validation sets."""

from __future__ import annotations

import numpy as np
import pytest

from sound_captions.caption.postprocess import (
    PostprocessConfig,
    ancestor_pairs,
    keep_most_specific,
    scores_to_cues,
)
from sound_captions.caption.vocabulary import (
    CaptionVocabulary,
    check_caption_text,
    derive_caption_text,
    run_caption_texts,
)
from sound_captions.metrics import tune_thresholds, tune_thresholds_pooled
from sound_captions.ontology import Ontology

MUSIC, KEYBOARD, PIANO, BARK = "/m/04rlf", "/m/05148p4", "/m/05r5c", "/m/05tny_"
WATER, SPEECH = "/m/0838f", "/m/09x0r"
TEXT = {MUSIC: "[music]", KEYBOARD: "[keyboard music]", PIANO: "[piano music]", BARK: "[dog barking]"}


def _track(n: int, on: range, level: float = 0.9) -> np.ndarray:
    x = np.full(n, 0.05)
    x[list(on)] = level
    return x


def _spans(cues) -> list[tuple[str, int, int]]:
    return [(c.label, c.start_ms // 1000, c.end_ms // 1000) for c in cues]


# -- the most specific class ---------------------------------------------------------------------


def test_ontology_pairs_are_ancestor_descendant_at_any_depth():
    onto = Ontology.load()
    assert onto.name(KEYBOARD) == "Keyboard (musical)" and onto.name(PIANO) == "Piano"
    labels = [BARK, PIANO, MUSIC, KEYBOARD, "my-own-label"]
    assert sorted(ancestor_pairs(labels)) == [(2, 1), (2, 3), (3, 1)]  # music ⊃ piano, keyboard; keyboard ⊃ piano


def test_piano_second_is_captioned_piano_only_and_music_where_piano_is_off():
    # Music runs 0..10 s, piano 3..6 s inside it: the ancestor is longer than the child.
    n = 10
    scores = np.stack([_track(n, range(0, 10)), _track(n, range(3, 6)), _track(n, range(0))], axis=1)
    labels = [MUSIC, PIANO, BARK]
    cues, active = scores_to_cues(scores, labels, dict.fromkeys(labels, 0.5), TEXT, PostprocessConfig())
    assert _spans(cues) == [(MUSIC, 0, 3), (PIANO, 3, 6), (MUSIC, 6, 10)]
    assert [c.text for c in cues] == ["[music]", "[piano music]", "[music]"]
    assert not (active[:, 0] & active[:, 1]).any()
    # Off, both are captioned in the piano seconds (the rule is what removes [music] there).
    both, _ = scores_to_cues(scores, labels, dict.fromkeys(labels, 0.5), TEXT, PostprocessConfig(most_specific=False))
    assert _spans(both) == [(MUSIC, 0, 5), (PIANO, 3, 6), (MUSIC, 5, 10)]  # 10 s split in two


def test_chain_keeps_the_deepest_and_unrelated_labels_are_untouched():
    n = 6
    music, keyboard, piano, bark = (_track(n, range(0, 6)), _track(n, range(0, 4)), _track(n, range(1, 3)), _track(n, range(0, 6)))
    active = np.stack([music, keyboard, piano, bark], axis=1) > 0.5
    kept = keep_most_specific(active, ancestor_pairs([MUSIC, KEYBOARD, PIANO, BARK]))
    assert kept[:, 0].tolist() == [False] * 4 + [True] * 2  # music only where keyboard/piano are off
    assert kept[:, 1].tolist() == [True, False, False, True, False, False]  # keyboard where piano is off
    assert kept[:, 2].tolist() == active[:, 2].tolist()
    assert kept[:, 3].tolist() == active[:, 3].tolist()


def test_an_uncaptioned_descendant_does_not_hide_its_ancestor():
    n = 4
    labels = [MUSIC, PIANO]
    scores = np.stack([_track(n, range(0, 4)), _track(n, range(0, 4))], axis=1)
    cues, _ = scores_to_cues(scores, labels, dict.fromkeys(labels, 0.5), {MUSIC: "[music]"}, PostprocessConfig())
    assert _spans(cues) == [(MUSIC, 0, 4)]


# -- no class dropped silently --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("Water", "[water]"),
        ("Baby cry, infant cry", "[baby cry]"),
        ("Police car (siren)", "[police car]"),
        ("Fixed-wing aircraft, airplane", "[fixed-wing aircraft]"),
        ("Door slammed, door bang", "[door bang]"),  # no past tense: the next alternative
        ("Door slammed", None),
        ("A very long display name that does not fit one caption line", None),
    ],
)
def test_derived_caption_follows_the_style(name, text):
    assert derive_caption_text(name) == text
    if text is not None:
        assert check_caption_text(text) == text and len(text) <= 42


def test_every_labelled_audioset_class_that_is_not_excluded_gets_a_styled_text():
    onto = Ontology.load()
    labels = list(onto.labelled_mids)
    resolved = CaptionVocabulary.load().resolve(labels)
    assert set(resolved.texts) | set(resolved.never) == set(labels)
    assert {why for why in resolved.never.values()} == {"excluded"}
    for text in resolved.texts.values():
        check_caption_text(text)


def test_class_without_text_is_derived_and_named_speech_stays_excluded():
    names = {WATER: "Water", BARK: "Bark", SPEECH: "Speech"}
    resolved = CaptionVocabulary.load().resolve([BARK, WATER, SPEECH], names)
    assert resolved.texts == {BARK: "[dog barking]", WATER: "[water]"}
    assert resolved.derived == {WATER: "[water]"}
    assert resolved.never == {SPEECH: "excluded"}
    (warning,) = resolved.warnings(names)  # the excluded speech class is no warning
    assert "'Water'" in warning and WATER in warning and "[water]" in warning


def test_user_vocabulary_can_exclude_a_class_on_purpose(tmp_path):
    path = tmp_path / "vocab.csv"
    path.write_text("mid,display_name,caption\n,Water,-\n,Dog,[dog yapping]\n")
    vocab = CaptionVocabulary.load(str(path))
    resolved = vocab.resolve([WATER, "/m/0bt9lr", BARK])
    assert resolved.never == {WATER: "excluded"}
    assert resolved.texts == {"/m/0bt9lr": "[dog yapping]", BARK: "[bark]"}  # Bark is not in this file: derived
    assert vocab.caption(WATER) is None
    assert CaptionVocabulary.load(str(path), fallback_to_name=True).caption(WATER) is None


def test_a_caption_run_keeps_the_bundles_exclusions_and_fills_an_old_bundles_gaps(tmp_path):
    labels, names = [BARK, WATER, PIANO], {BARK: "Bark", WATER: "Water", PIANO: "Piano"}
    # An older bundle recorded no exclusions and has no text for Water: derived at caption time.
    old = run_caption_texts(labels, names, {BARK: "[dog barking]"}, {}, None)
    assert old.texts == {BARK: "[dog barking]", WATER: "[water]", PIANO: "[piano music]"}
    assert old.derived == {WATER: "[water]"}
    # A bundle trained with Water excluded on purpose keeps it off.
    new = run_caption_texts(labels, names, {BARK: "[dog barking]"}, {"captions_never": {WATER: "excluded"}}, None)
    assert new.never == {WATER: "excluded"} and WATER not in new.texts
    # --vocabulary replaces the bundle's texts.
    path = tmp_path / "v.csv"
    path.write_text("mid,display_name,caption\n,Piano,-\n")
    user = run_caption_texts(labels, names, {BARK: "[dog barking]", PIANO: "[piano music]"}, {}, str(path))
    assert user.never == {PIANO: "excluded"} and user.derived == {BARK: "[bark]", WATER: "[water]"}


# -- thresholds on small validation sets ----------------------------------------------------------


def _validation(seed: int = 0):
    """Label a: 60 positives scoring 0.6..0.95 over negatives up to 0.5; label b: 2 positives,
    one scoring low (0.35), over negatives that happen to stay below 0.3."""
    rng = np.random.default_rng(seed)
    n = 400
    y = np.zeros((n, 2), bool)
    y[:60, 0] = True
    y[100:102, 1] = True
    scores = np.stack([rng.uniform(0.0, 0.5, size=n), rng.uniform(0.0, 0.3, size=n)], axis=1)
    scores[:60, 0] = rng.uniform(0.6, 0.95, size=60)
    scores[100, 1], scores[101, 1] = 0.9, 0.35
    return y, scores


def test_labels_with_few_positives_fall_back_to_the_pooled_threshold():
    y, scores = _validation()
    tuning = tune_thresholds_pooled(y, scores, ["a", "b"], target_precision=0.9, min_positives=5)
    assert tuning.fallback == ("b",)
    assert tuning.positives == {"a": 60, "b": 2}
    # The pooled threshold is the same rule over all (window, label) scores together.
    pooled = tune_thresholds(y.reshape(-1, 1), scores.reshape(-1, 1), ["all"], target_precision=0.9)["all"]
    assert tuning.pooled == pytest.approx(pooled)
    assert tuning.thresholds["b"] == pytest.approx(pooled)
    assert tuning.thresholds["a"] == pytest.approx(tune_thresholds(y, scores, ["a", "b"])["a"])
    # Tuned on its two positives alone, b's threshold drops below 0.35 (recall 2/2 costs nothing
    # on these few windows); the pooled one knows that scores up to 0.5 are often noise.
    alone = tune_thresholds(y, scores, ["a", "b"])["b"]
    assert alone < 0.35 < tuning.thresholds["b"]


def test_no_fallback_when_every_label_has_enough_positives_and_zero_disables_it():
    y, scores = _validation()
    assert tune_thresholds_pooled(y, scores, ["a", "b"], min_positives=2).fallback == ()
    off = tune_thresholds_pooled(y, scores, ["a", "b"], min_positives=0)
    assert off.fallback == () and off.pooled is None
    none = np.zeros_like(y)
    empty = tune_thresholds_pooled(none, scores, ["a", "b"], default=0.42, min_positives=5)
    assert empty.pooled is None and empty.thresholds == {"a": 0.42, "b": 0.42} and empty.fallback == ("a", "b")
    with pytest.raises(ValueError, match="min_positives"):
        tune_thresholds_pooled(y, scores, ["a", "b"], min_positives=-1)
