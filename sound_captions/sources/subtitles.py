"""A library's own SDH subtitles → clip requests with per-second truth.

    <root>/news/0412.mp4 + news/0412.srt (or .vtt, or news/0412.en.srt: the same relative name)
      ─► the sound-description cues: ``[door slams]``, ``(applause)``, ``♪ upbeat music ♪``;
         dialogue, speaker labels (``[JOHN]:``) and "music stops" lines are no sound
      ─► each description → AudioSet classes (:class:`DescriptionMapper`)
      ─► one request per medium: the whole medium, one event per described stretch

The medium's seconds outside every event are negatives for the classes its subtitles name (the
events contract of ``dataset/stages.second_labels``). A subtitle file that cannot be trusted is a
recorded :class:`SourceFailure` and its medium is not used: not UTF-8 (``subtitle_encoding``),
broken or reversed timing (``subtitle_timing``), cues that overlap on screen in the same place
(``subtitle_overlap``; cues placed apart by WebVTT settings or SRT's ``{\an8}`` may overlap). A cue
past the medium's end is found when the medium is decoded (``events_past_end``). Every
description text that maps to no class is reported with its count, so the user can add it to
their mapping CSV.
"""

from __future__ import annotations

import csv
import html
import io
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from importlib import resources

from sound_captions import reasons, storage
from sound_captions.caption.cues import Cue, CueFileError, read_cues
from sound_captions.caption.inputs import MEDIA_EXTENSIONS, discover
from sound_captions.caption.style import description_key
from sound_captions.caption.vocabulary import CaptionVocabulary, excluded_mids
from sound_captions.ontology import Ontology, UnknownLabelError
from sound_captions.sources.manifest import make_clip_id
from sound_captions.sources.requests import ClipRequest, LabelEvent, SourceFailure

SUBTITLE_SUFFIXES = (".vtt", ".srt")
IGNORE = "-"  # a mapping CSV's label cell: this text is no sound class (a speaker's name, "in French")
OVERLAP_TOLERANCE_MS = 40  # one frame at 25 fps: conversions round cue times
MUSIC_NOTES = "♪♫♬"

_TAGS = re.compile(r"<[^>]*>|\{\\[^}]*\}")  # WebVTT <i>/<c.x> and SRT {\an8} tags
_GROUP = re.compile(r"\[([^\[\]]+)\]|\(([^()]+)\)")
_PARTS = re.compile(r"\s*(?:,|;|&|/|\band\b|\bwith\b|\bthen\b|\bover\b)\s*")
_JOINING = {"and", "with", "then", "over"}  # the words of _PARTS, as _words gives them
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_ENDED = re.compile(r"\b(?:stops?|stopped|ends?|ended|ceases?|cuts (?:out|off)|falls? silent|dies down)\b")
_PLACEMENT = re.compile(r"\{\\an?(\d+)\}")  # SRT's {\an8}: where the cue is shown
_LANGUAGE_TAG = re.compile(r"\.[A-Za-z]{2,5}(?:[-_][A-Za-z]{2,4})?$")  # show.en.srt, show.eng.sdh.srt, show.pt-BR.srt
OWN_OUTPUT = "NOTE sound-captions bundle="  # this tool's own .vtt: machine captions, never truth


def _stem(word: str) -> str:
    """A crude stem that makes the forms SDH uses meet: barks/barking → bark, slams/slamming →
    slam, cries/crying → cry, slides/sliding → slid. Both sides of a lookup are stemmed alike."""
    if len(word) > 4 and word.endswith("ies"):
        word = word[:-3] + "y"
    elif len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    if len(word) > 5 and word.endswith("ing"):
        word = word[:-3]
    if len(word) > 3 and word.endswith("e"):
        word = word[:-1]
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "aeiou":
        word = word[:-1]
    return word


def _words(text: str) -> list[str]:
    return [_stem(w) for w in _WORD.findall(text.lower())]


def _key(text: str) -> str:
    return " ".join(_words(text))


@dataclass
class DescriptionMapper:
    """Description text → AudioSet classes, first source wins: the user's mapping CSV
    (``text,label``; a label of ``-`` ignores the text), the packaged SDH terms
    (``data/sdh_terms.csv``: ``door slams``, ``laughs``, ``gunshots``, …), the caption vocabulary
    in reverse (``[piano music]`` → Piano), then the ontology's class names and their
    alternatives (qualified ones, ``Tapping (guitar technique)``, last). Speech and acoustic-scene
    classes are never a target (the transcript covers speech).

    A text is looked up whole (stemmed: ``dogs barking`` meets ``dog barks``), else split
    (``laughter and applause`` is two descriptions) and each part by its longest known run of
    words (``distant thunder rumbling`` → Thunder)."""

    table: dict[str, str | None]
    unmapped: Counter = field(default_factory=Counter)
    mapped: Counter = field(default_factory=Counter)

    @classmethod
    def load(cls, ontology: Ontology, mapping_uri: str | None = None, vocabulary: CaptionVocabulary | None = None) -> DescriptionMapper:
        excluded = excluded_mids(ontology)
        table: dict[str, str | None] = {}

        def add(text: str, mid: str | None) -> None:
            key = _key(text)
            if key and key not in table and (mid is None or mid not in excluded):
                table[key] = mid

        if mapping_uri:
            for text, mid in _mapping_rows(storage.read_text(mapping_uri), mapping_uri, ontology):
                add(text, mid)
        packaged = (resources.files("sound_captions") / "data" / "sdh_terms.csv").read_text(encoding="utf-8")
        for text, mid in _mapping_rows(packaged, "sdh_terms.csv", ontology):
            add(text, mid)
        for mid, caption in (vocabulary or CaptionVocabulary.load()).captions.items():
            add(description_key(caption), mid)
        alternatives = [(a, mid) for mid, c in ontology.classes.items() for a in c.name.split(",")]
        for alternative, mid in alternatives:
            if "(" not in alternative:
                add(alternative, mid)
        for alternative, mid in alternatives:  # "Tapping (guitar technique)": a niche sense, last
            add(re.sub(r"\([^)]*\)", " ", alternative), mid)
        return cls(table)

    def classes(self, text: str) -> list[str]:
        """The classes one description names (none: ignored, or unmapped and counted). The whole
        text is looked up first (``rhythm and blues``), then each of its parts."""
        text = text.lower()
        parts = [text] if self._names_a_joined_class(_words(text)) else _PARTS.split(text)
        found: list[str] = []
        for part in parts:
            words = _words(part)
            if not words or _ENDED.search(part):
                continue  # "[music stops]", "[dog stops barking]": the sound is over
            mid, known = self._lookup(words)
            if not known:
                self.unmapped[" ".join(_WORD.findall(part))] += 1
            elif mid is not None:
                self.mapped[mid] += 1
                found.append(mid)
        return list(dict.fromkeys(found))

    def _names_a_joined_class(self, words: list[str]) -> bool:
        """Whether the text is known whole, or its longest known run spans a joining word
        (``rock and roll music``, ``rhythm and blues``): then it is one description, not two."""
        if not words:
            return False
        if " ".join(words) in self.table:
            return True
        for length in range(len(words), 2, -1):
            for start in range(len(words) - length + 1):
                run = words[start : start + length]
                if " ".join(run) in self.table and _JOINING & set(run[1:-1]):
                    return True
        return False

    def knows(self, text: str) -> bool:
        """Whether the whole text is a known description (``upbeat music``), not just a word of it."""
        return " ".join(_words(text)) in self.table

    def _lookup(self, words: list[str]) -> tuple[str | None, bool]:
        """The longest known run of words; among runs of one length the last one, since SDH
        names the sound last (``cat hisses`` → Hiss, ``water dripping`` → Drip)."""
        for length in range(len(words), 0, -1):
            for start in range(len(words) - length, -1, -1):
                key = " ".join(words[start : start + length])
                if key in self.table:
                    return self.table[key], True
        return None, False


def _mapping_rows(text: str, origin: str, ontology: Ontology):
    """``text,label`` rows (header optional) → (text, mid or None for ``-``)."""
    for line_no, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or row[0].lstrip().startswith("#") or [c.strip().lower() for c in row] == ["text", "label"]:
            continue
        if len(row) != 2:
            raise ValueError(f"{origin}:{line_no}: expected text,label, got {row!r}")
        label = row[1].strip()
        try:
            yield row[0].strip(), None if label == IGNORE else ontology.resolve(label)
        except UnknownLabelError as exc:
            raise ValueError(f"{origin}:{line_no}: {exc}") from None


def cue_descriptions(cue: Cue) -> tuple[list[str], list[str], bool]:
    """A cue's bracketed sound descriptions, the texts of its ``♪`` lines, and whether it shows
    music notes at all. Speaker labels (a group followed by ``:``) and dialogue are left out;
    HTML entities and WebVTT/SRT styling tags are undone first."""
    texts: list[str] = []
    note_lines: list[str] = []
    notes = False
    for raw in cue.lines:
        line = html.unescape(_TAGS.sub("", raw))
        for match in _GROUP.finditer(line):
            if not line[match.end() :].lstrip().startswith(":"):
                texts.append(match.group(1) or match.group(2))
        if any(n in line for n in MUSIC_NOTES):
            notes = True
            inner = _GROUP.sub(" ", line).translate({ord(n): " " for n in MUSIC_NOTES}).strip(" -#*")
            if inner:
                note_lines.append(inner)
    return texts, note_lines, notes


@dataclass
class SubtitleLibrary:
    requests: list[ClipRequest]
    failures: list[SourceFailure]
    report: dict


def read_subtitle_library(
    root: str, ontology: Ontology | None = None, *, mapping_uri: str | None = None, allow_overlaps: bool = False,
    mapper: DescriptionMapper | None = None,
) -> SubtitleLibrary:
    """Every medium below ``root`` (folder or s3:// prefix) with a subtitle file beside it →
    one request labelled by its sound descriptions; see the module docstring."""
    if not storage.is_s3(root) and not storage.local_path(root).is_dir():
        raise ValueError(f"{root}: subtitles are read from a folder or s3:// prefix of media with their .vtt/.srt beside them")
    ontology = ontology or Ontology.load()
    mapper = replace(mapper or DescriptionMapper.load(ontology, mapping_uri), mapped=Counter(), unmapped=Counter())
    listed, input_failures = discover([root], extensions=MEDIA_EXTENSIONS + SUBTITLE_SUFFIXES)  # one listing of the tree
    failures = [SourceFailure(f.input, f.reason, f.message) for f in input_failures if f.status == "failed"]
    subtitled = [item for item in listed if item.uri.lower().endswith(SUBTITLE_SUFFIXES)]
    media = [item for item in listed if not item.uri.lower().endswith(SUBTITLE_SUFFIXES)]
    candidates = _subtitle_candidates([item.uri for item in subtitled])
    if not media and not any(f.reason == reasons.EMPTY_INPUT for f in failures):
        failures.append(SourceFailure(root, reasons.EMPTY_INPUT, "no media files found below it"))
    if media and not subtitled:
        failures.append(SourceFailure(root, reasons.EMPTY_INPUT, "no .vtt or .srt file below it: subtitles sit beside their media, same name"))
    music = ontology.resolve("Music")
    requests: list[ClipRequest] = []
    counts: Counter = Counter()
    considered: set[str] = set()
    for item in media:
        options = candidates.get(_stem_uri(item.uri), [])
        considered.update(options)
        cues, failed = None, False
        for uri in options:
            try:
                cues = _read_subtitle_file(uri, allow_overlaps)
            except _SubtitleError as exc:
                failures.append(SourceFailure(uri, exc.reason, str(exc)))
                failed = True
                break
            if cues is not None:
                break
            counts["own_captions_skipped"] += 1  # this tool's .vtt beside the medium: not a person's truth
        if cues is None:
            counts["media_without_subtitles"] += not failed
            continue
        counts["subtitle_files"] += 1
        events: list[LabelEvent] = []
        for cue in cues:
            texts, note_lines, notes = cue_descriptions(cue)
            texts += [t for t in note_lines if mapper.knows(t)]  # "♪ upbeat music ♪"; other ♪ lines are lyrics
            mids = [m for text in texts for m in mapper.classes(text)]
            if notes:
                mids.append(music)  # ♪ with lyrics, a description or alone: music is playing
                counts["music_note_cues"] += 1
            events += [LabelEvent(m, cue.start_ms, cue.end_ms) for m in dict.fromkeys(mids)]
            counts["sound_cues"] += bool(mids)
        events = _merged(events)
        if not events:
            counts["files_without_sound_cues"] += 1
            continue
        labels = tuple(dict.fromkeys(e.label for e in events))
        requests.append(ClipRequest(make_clip_id(item.uri, None, None), item.uri, None, None, labels, uri, events=tuple(events)))
    orphans = sorted({item.uri for item in subtitled} - considered)
    report = {
        "root": root,
        "media": len(media),
        **{k: counts[k] for k in ("subtitle_files", "media_without_subtitles", "files_without_sound_cues", "sound_cues", "music_note_cues", "own_captions_skipped")},
        "media_used": len(requests),
        "classes": {ontology.name(m): n for m, n in mapper.mapped.most_common()},
        "unmapped_texts": dict(mapper.unmapped.most_common()),
        "subtitles_without_media": orphans[:50],
    }
    return SubtitleLibrary(requests, failures, report)


def _stem_uri(uri: str) -> str:
    head, _, tail = uri.rpartition("/")
    return f"{head}/{tail.rsplit('.', 1)[0]}" if "." in tail else uri


def _subtitle_candidates(uris: list[str]) -> dict[str, list[str]]:
    """Medium stem → its subtitle files, best first: ``show.vtt``, ``show.srt``, then with a
    language or kind tag (``show.en.srt``, ``show.eng.sdh.vtt``), WebVTT before SRT each time."""
    ranked: dict[str, list[tuple[int, str]]] = {}
    for uri in uris:
        stem, srt = _stem_uri(uri), uri.lower().endswith(".srt")
        ranked.setdefault(stem, []).append((int(srt), uri))
        for depth in (1, 2):  # show.en, show.en.sdh
            tag = _LANGUAGE_TAG.search(stem.rpartition("/")[2])
            if not tag:
                break
            stem = stem[: len(stem) - len(tag.group(0))]
            ranked.setdefault(stem, []).append((2 * depth + int(srt), uri))
    return {stem: [uri for _, uri in sorted(options)] for stem, options in ranked.items()}


class _SubtitleError(ValueError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _read_subtitle_file(uri: str, allow_overlaps: bool) -> list[Cue] | None:
    """A subtitle file's cues; ``None`` for this tool's own captions (never truth)."""
    data = storage.read_bytes(uri)
    try:
        text = data.decode("utf-16") if data[:2] in (b"\xff\xfe", b"\xfe\xff") else data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _SubtitleError(reasons.SUBTITLE_ENCODING, f"not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); save it as UTF-8") from None
    if OWN_OUTPUT in text[:4096]:
        return None
    try:
        cues = read_cues(text, srt=uri.lower().endswith(".srt"), strict=True)
    except CueFileError as exc:
        raise _SubtitleError(reasons.SUBTITLE_TIMING, str(exc)) from None
    if not allow_overlaps:
        _check_overlaps(cues)
    return cues


def _placement(cue: Cue) -> str:
    """Where a cue is shown: its WebVTT settings, or an SRT ``{\\anN}`` tag."""
    tag = _PLACEMENT.search(cue.text)
    return f"{cue.settings}|{tag.group(1) if tag else ''}"


def _check_overlaps(cues: list[Cue]) -> None:
    """Two cues on screen at once in the same place: a timing error (cues placed apart, a
    sound at the top and dialogue at the bottom, may overlap)."""
    on_screen: list[tuple[int, Cue]] = []
    for j, b in sorted(enumerate(cues, start=1), key=lambda c: (c[1].start_ms, c[1].end_ms)):
        on_screen = [(i, a) for i, a in on_screen if a.end_ms - OVERLAP_TOLERANCE_MS > b.start_ms]
        for i, a in on_screen:
            if _placement(a) == _placement(b):
                raise _SubtitleError(
                    reasons.SUBTITLE_OVERLAP,
                    f"cue {i} ({_clock(a.start_ms)}–{_clock(a.end_ms)}) and cue {j} ({_clock(b.start_ms)}–{_clock(b.end_ms)}) "
                    f"overlap by {(min(a.end_ms, b.end_ms) - b.start_ms) / 1000:.3f} s; fix the timing, or pass --allow-overlapping-cues",
                )
        on_screen.append((j, b))


def _clock(ms: int) -> str:
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def _merged(events: list[LabelEvent]) -> list[LabelEvent]:
    """One event per stretch of a class: cues of one class that overlap or touch are joined."""
    out: list[LabelEvent] = []
    for e in sorted(events, key=lambda e: (e.label, e.onset_ms)):
        if out and out[-1].label == e.label and e.onset_ms <= out[-1].offset_ms:
            out[-1] = LabelEvent(e.label, out[-1].onset_ms, max(out[-1].offset_ms, e.offset_ms))
        else:
            out.append(e)
    return sorted(out, key=lambda e: (e.onset_ms, e.offset_ms, e.label))


def subtitle_summary(report: dict, top: int = 8) -> str:
    """What a ``--subtitles`` root gave, in a few lines for the console."""
    lines = [
        f"subtitles {report['root']}: {report['media_used']} of {report['media']} media labelled by {report['sound_cues']} sound cues "
        f"({report['subtitle_files']} subtitle files; {report['media_without_subtitles']} media without one; "
        f"{report['files_without_sound_cues']} files with no sound cue)"
    ]
    if report["classes"]:
        lines.append("  classes: " + ", ".join(f"{name} ×{n}" for name, n in list(report["classes"].items())[:top]))
    if report["unmapped_texts"]:
        texts = list(report["unmapped_texts"].items())
        more = f" and {len(texts) - top} more (dataset.json)" if len(texts) > top else ""
        lines.append(
            f"  {len(texts)} description texts map to no class: " + ", ".join(f"{t!r} ×{n}" for t, n in texts[:top]) + more
            + "; give them a label (or '-') in --subtitle-map"
        )
    return "\n".join(lines)
