"""A library's own SDH subtitles as per-second labels (issue 12): the sound-description cues of
a ``.srt``/``.vtt`` beside each medium (brackets, parentheses, music notes) map to AudioSet
classes and label the seconds they cover; dialogue is ignored; unmappable texts are reported
with their counts; a bad subtitle file is a recorded failure of that medium only."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from sound_captions import reasons
from sound_captions.caption.cues import Cue
from sound_captions.cli import main
from sound_captions.dataset import shards
from sound_captions.ontology import Ontology
from sound_captions.sources.subtitles import DescriptionMapper, cue_descriptions, read_subtitle_library
from sound_captions.testing.media import KIND_LABELS, make_media

BEEP, MUSIC = KIND_LABELS["beep"], KIND_LABELS["music"]
ONTOLOGY = Ontology.load()
MID = ONTOLOGY.resolve

SRT = """1
00:00:01,000 --> 00:00:03,000
[DOOR SLAMS]
Who's there?

2
00:00:03,500 --> 00:00:04,000
JOHN: It's me. (laughs)

3
00:00:05,000 --> 00:00:08,000
♪ upbeat music ♪

4
00:00:08,000 --> 00:00:09,500
[speaking Klingon]

5
00:00:10,000 --> 00:00:12,000
[JOHN]: Listen.
[music stops]
"""

VTT = """WEBVTT

00:00.000 --> 00:02.000
♪ I will always love you ♪

00:02.000 --> 00:04.000 line:0
<i>[dogs barking and distant thunder]</i>

00:02.500 --> 00:03.500
Look out!

00:05.000 --> 00:06.000
(applause)
"""


@pytest.fixture(scope="module")
def mapper() -> DescriptionMapper:
    return DescriptionMapper.load(ONTOLOGY)


def test_sound_descriptions_are_found_and_dialogue_and_speaker_labels_are_not():
    assert cue_descriptions(Cue(0, 1000, "[DOOR SLAMS]\nWho's there?")) == (["DOOR SLAMS"], [], False)
    assert cue_descriptions(Cue(0, 1000, "JOHN: It's me. (laughs)")) == (["laughs"], [], False)
    assert cue_descriptions(Cue(0, 1000, "[JOHN]: Listen.")) == ([], [], False)  # a speaker label
    assert cue_descriptions(Cue(0, 1000, "♪ upbeat music ♪")) == ([], ["upbeat music"], True)
    assert cue_descriptions(Cue(0, 1000, "<i>[siren wails]</i>")) == (["siren wails"], [], False)
    assert cue_descriptions(Cue(0, 1000, "{\\an8}[thunder &amp; rain]")) == (["thunder & rain"], [], False)


def test_descriptions_map_through_vocabulary_terms_and_ontology_names(mapper):
    assert mapper.classes("DOOR SLAMS") == [MID("Slam")]
    assert mapper.classes("laughs") == [MID("Laughter")]
    assert mapper.classes("piano music") == [MID("Piano")]  # the caption vocabulary in reverse
    assert mapper.classes("distant thunder rumbling") == [MID("Thunder")]  # the longest known run of words
    assert mapper.classes("laughter and applause") == [MID("Laughter"), MID("Applause")]
    assert mapper.classes("Applause continues") == [MID("Applause")]
    assert mapper.classes("music stops") == []  # the sound is over: no class, and not "unmapped"
    assert mapper.classes("dog stops barking") == []
    assert mapper.classes("speaking Klingon") == []
    assert mapper.classes("in French") == []  # an SDH term marked "-": ignored on purpose
    assert dict(mapper.unmapped) == {"speaking klingon": 1}
    assert mapper.classes("cat hisses") == [MID("Hiss")]  # SDH names the sound last
    assert mapper.classes("rock and roll music") == [MID("Rock and roll")]  # one class, not "rock" + "roll music"
    assert mapper.classes("tapping") == [MID("Tap")]  # not "Tapping (guitar technique)"
    assert not {MID("Speech")} & set(mapper.table.values())  # the transcript covers speech


def test_a_user_mapping_is_looked_up_first_and_bad_rows_are_refused(tmp_path):
    own = tmp_path / "map.csv"
    own.write_text("text,label\nspeaking French,-\ndoor slams,Door\nkettle whistles,/m/06hck5\n")
    mapper = DescriptionMapper.load(ONTOLOGY, str(own))
    assert mapper.classes("door slams") == [MID("Door")]
    assert mapper.classes("the kettle whistling") == ["/m/06hck5"]  # not "Kettle whistle", the ontology's
    assert mapper.classes("speaking french") == [] and not mapper.unmapped
    (tmp_path / "bad.csv").write_text("text,label\nhum,No Such Class\n")
    with pytest.raises(ValueError, match=r"bad.csv:2: unknown AudioSet label 'No Such Class'"):
        DescriptionMapper.load(ONTOLOGY, str(tmp_path / "bad.csv"))


def _library(tmp_path, files: dict[str, str | bytes]):
    lib = tmp_path / "lib"
    lib.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = lib / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return lib


def test_a_library_gives_one_request_per_subtitled_medium_with_its_events(tmp_path):
    lib = _library(tmp_path, {"a.mp4": b"x", "a.srt": SRT, "sub/b.mkv": b"x", "sub/b.vtt": VTT, "c.mp4": b"x", "lonely.srt": SRT})
    library = read_subtitle_library(str(lib), ONTOLOGY)
    assert library.failures == []
    by_name = {r.source.rsplit("/", 1)[-1]: r for r in library.requests}
    assert set(by_name) == {"a.mp4", "b.mkv"}
    a = by_name["a.mp4"]
    assert a.start_s is None and a.end_s is None and a.origin.endswith("a.srt")
    assert [(e.label, e.onset_ms, e.offset_ms) for e in a.events] == [
        (MID("Slam"), 1000, 3000), (MID("Laughter"), 3500, 4000), (MUSIC, 5000, 8000),
    ]  # fmt: skip
    assert set(a.labels) == {MID("Slam"), MID("Laughter"), MUSIC}
    b = by_name["b.mkv"]
    assert [(e.label, e.onset_ms, e.offset_ms) for e in b.events] == [
        (MUSIC, 0, 2000), (MID("Bark"), 2000, 4000), (MID("Thunder"), 2000, 4000), (MID("Applause"), 5000, 6000),
    ]  # fmt: skip  — a lyric is music; a line:0 cue may overlap the dialogue at the bottom
    report = library.report
    assert (report["media"], report["media_used"], report["subtitle_files"], report["media_without_subtitles"]) == (3, 2, 2, 1)
    assert report["unmapped_texts"] == {"speaking klingon": 1}
    assert report["subtitles_without_media"] == [str(lib / "lonely.srt")]
    assert report["classes"]["Music"] == 1 and report["music_note_cues"] == 2


def test_bad_subtitle_files_are_recorded_failures_of_their_media_only(tmp_path):
    overlapping = "1\n00:00:01,000 --> 00:00:04,000\n[applause]\n\n2\n00:00:03,000 --> 00:00:05,000\nThank you.\n"
    reversed_time = "1\n00:00:05,000 --> 00:00:04,000\n[applause]\n"
    lib = _library(tmp_path, {
        "good.mp4": b"x", "good.srt": SRT,
        "latin1.mp4": b"x", "latin1.srt": "1\n00:00:01,000 --> 00:00:02,000\n[caf\xe9 chatter]\n".encode("latin-1"),
        "overlap.mp4": b"x", "overlap.srt": overlapping,
        "reversed.mp4": b"x", "reversed.srt": reversed_time,
        "garbage.mp4": b"x", "garbage.vtt": "WEBVTT\n\nnot a timing line at all --> ever\n[applause]\n",
    })  # fmt: skip
    library = read_subtitle_library(str(lib), ONTOLOGY)
    assert [r.source.rsplit("/", 1)[-1] for r in library.requests] == ["good.mp4"]
    failed = {f.item.rsplit("/", 1)[-1]: (f.reason, f.message) for f in library.failures}
    assert set(failed) == {"latin1.srt", "overlap.srt", "reversed.srt", "garbage.vtt"}
    assert failed["latin1.srt"][0] == reasons.SUBTITLE_ENCODING and "0xe9" in failed["latin1.srt"][1]
    assert failed["overlap.srt"] == (
        reasons.SUBTITLE_OVERLAP,
        "cue 1 (00:00:01.000–00:00:04.000) and cue 2 (00:00:03.000–00:00:05.000) overlap by 1.000 s; "
        "fix the timing, or pass --allow-overlapping-cues",
    )
    assert failed["reversed.srt"][0] == reasons.SUBTITLE_TIMING and failed["garbage.vtt"][0] == reasons.SUBTITLE_TIMING
    allowed = read_subtitle_library(str(lib), ONTOLOGY, allow_overlaps=True)
    assert "overlap.mp4" in {r.source.rsplit("/", 1)[-1] for r in allowed.requests}
    with pytest.raises(ValueError, match="a folder or s3:// prefix"):
        read_subtitle_library(str(lib / "good.mp4"), ONTOLOGY)
    bare = _library(tmp_path / "bare", {"x.mp4": b"x"})
    empty = read_subtitle_library(str(bare), ONTOLOGY)
    assert empty.requests == [] and [(f.reason, f.item) for f in empty.failures] == [(reasons.EMPTY_INPUT, str(bare))]


def test_real_world_file_forms_are_read(tmp_path):
    """Review of issue 12: a language-tagged name, UTF-16, SRT placement tags, our own captions
    beside the medium, lyrics that mention music, and overlaps beyond the next cue."""
    own = "WEBVTT\n\nNOTE sound-captions bundle=x settings=y input=1:2\n\n00:00.000 --> 00:01.000 line:0\n[applause]\n"
    lib = _library(tmp_path, {
        "a.mp4": b"x", "a.en.sdh.srt": "1\n00:00:01,000 --> 00:00:02,000\n[applause]\n",
        "b.mp4": b"x", "b.vtt": own, "b.srt": "1\n00:00:00,000 --> 00:00:02,000\n♪ I'm playing with fire ♪\n",
        "c.mp4": b"x", "c.srt": "1\n00:00:00,000 --> 00:00:04,000\n{\\an8}[rain]\n\n2\n00:00:01,000 --> 00:00:02,000\nIt's wet.\n",
        "d.mp4": b"x", "d.srt": ("1\n00:00:00,000 --> 00:00:10,000\n[rain]\n\n2\n00:00:01,000 --> 00:00:02,000\n{\\an8}[thunder]\n\n"
                                "3\n00:00:03,000 --> 00:00:04,000\nStill raining.\n"),
    })  # fmt: skip
    (lib / "e.mp4").write_bytes(b"x")
    (lib / "e.srt").write_bytes("1\n00:00:00,000 --> 00:00:01,000\n[café chatter]\n".encode("utf-16"))
    library = read_subtitle_library(str(lib), ONTOLOGY)
    events = {r.source.rsplit("/", 1)[-1]: [(e.label, e.onset_ms, e.offset_ms) for e in r.events] for r in library.requests}
    assert events["a.mp4"] == [(MID("Applause"), 1000, 2000)]  # a.en.sdh.srt pairs with a.mp4
    assert events["b.mp4"] == [(MUSIC, 0, 2000)]  # our own b.vtt is no truth; a lyric is music, not "Fire"
    assert events["c.mp4"] == [(MID("Rain"), 0, 4000)]  # {\an8} at the top, dialogue below: no overlap
    assert events["e.mp4"] == [(MID("Chatter"), 0, 1000)]  # UTF-16 with its byte-order mark
    (failure,) = library.failures
    assert failure.item.endswith("d.srt") and failure.reason == reasons.SUBTITLE_OVERLAP
    assert "cue 1 (00:00:00.000–00:00:10.000) and cue 3 (00:00:03.000–00:00:04.000) overlap by 1.000 s" in failure.message
    assert library.report["own_captions_skipped"] == 1


@pytest.mark.ray
def test_dataset_build_from_subtitles_labels_the_seconds_the_cues_cover(ray_session, tmp_path):
    lib = tmp_path / "lib"
    make_media(lib / "show.mp4", [("silence", 1), ("beep", 3), ("silence", 1), ("music", 3), ("silence", 2)], seed=3)
    (lib / "show.srt").write_text(
        "1\n00:00:01,000 --> 00:00:04,000\n[beeping]\nWhat is that?\n\n"
        "2\n00:00:05,000 --> 00:00:08,000\n♪ ♪\n\n"
        "3\n00:00:08,500 --> 00:00:09,500\n[speaking Klingon]\n"
    )
    make_media(lib / "short.mp4", [("beep", 3)], seed=4)
    (lib / "short.vtt").write_text("WEBVTT\n\n00:00.000 --> 00:01.400\n[beeping]\n\n00:02.600 --> 00:03.400\n[beeping]\n")
    make_media(lib / "late.mp4", [("music", 2)], seed=5)  # its cue lies past its end: the wrong file
    (lib / "late.srt").write_text("1\n00:00:30,000 --> 00:00:32,000\n[music]\n")
    out = tmp_path / "ds"
    result = CliRunner().invoke(
        main, ["dataset", "build", "--subtitles", str(lib), "--out", str(out), "--features", "16x16x1", "--split", "1,0,0", "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "1 description texts map to no class: 'speaking klingon' ×1" in result.output
    info = shards.load_dataset_info(str(out))
    rows = {}
    for uri in shards.shard_uris(str(out), info):
        table = shards.read_table(uri)
        for source, second, labels in zip(*(table.column(c).to_pylist() for c in ("source", "second", "labels")), strict=True):
            rows[(source.rsplit("/", 1)[-1], second)] = labels
    assert [rows[("show.mp4", k)] for k in range(10)] == [[], [BEEP], [BEEP], [BEEP], [], [MUSIC], [MUSIC], [MUSIC], [], []]
    assert [rows[("short.mp4", k)] for k in range(3)] == [[BEEP], [], []]  # 0.4 s is not enough; a cue may end past the end
    assert not any(name == "late.mp4" for name, _ in rows)
    failures = shards.read_table(str(out / shards.FAILURES)).to_pylist()
    assert [(f["source"].rsplit("/", 1)[-1], f["reason"]) for f in failures] == [("late.mp4", reasons.EVENTS_PAST_END)]
    recorded = json.loads((out / "dataset.json").read_text())["labels_per_second"]
    assert recorded["clips"] == 3 and recorded["subtitles"][0]["unmapped_texts"] == {"speaking klingon": 1}
