"""AudioSet label files → :class:`ClipRequest` records (plus :class:`SourceFailure` rows).

Two published formats:

- segment lists (``balanced_train_segments.csv``, ``eval_segments.csv``,
  ``unbalanced_train_segments.csv``): three ``#`` header lines, then
  ``YTID, start_seconds, end_seconds, "label,label,..."`` with the labels as one quoted field;
- strong labels (``audioset_train_strong.tsv``, 2021): a header line
  ``segment_id<TAB>start_time_seconds<TAB>end_time_seconds<TAB>label``, one row per event, with
  ``segment_id = <YTID>_<segment start in integer ms>`` and event times relative to the 10-s
  segment. The framed eval file's optional fifth column ``present`` (``PRESENT`` /
  ``NOT_PRESENT``) is honoured: only present events label the clip.

Times become integer milliseconds once, when parsed; clip ids are ``<YTID>_<start ms>`` in both
formats, so a strong clip and its weak counterpart share an id. Malformed rows (wrong field count,
bad number, end <= start, a label id that is not an AudioSet id or not in ``known_labels``) become
``SourceFailure(reason="malformed")``; the other rows still parse. A repeated segment becomes
``SourceFailure(reason="duplicate")`` and the first occurrence is kept.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Collection
from pathlib import Path

from sound_captions import reasons
from sound_captions.sources.requests import (
    MALFORMED,
    YOUTUBE_SCHEME,
    ClipRequest,
    LabelEvent,
    SourceFailure,
    audioset_clip_id,
    seconds_to_ms,
)

DUPLICATE = reasons.DUPLICATE
SEGMENT_MS = 10_000  # AudioSet segments are 10 s
_YTID = re.compile(r"^[A-Za-z0-9_-]+$")
_MID = re.compile(r"^/[a-z]/[0-9a-z_]+$")

TextOrPath = str | os.PathLike[str]


class _RowError(ValueError):
    pass


def read_audioset_segments(
    text_or_path: TextOrPath,
    *,
    known_labels: Collection[str] | None = None,
    name: str | None = None,
) -> tuple[list[ClipRequest], list[SourceFailure]]:
    """Parse an AudioSet segment list.

    Args:
        text_or_path: the file's text (anything containing a newline), or a path / storage URI.
        known_labels: label mids accepted (e.g. the 527 labelled ones); None accepts any
            well-formed mid.
        name: name used in ``origin`` / failure ``item`` (default: the file name, or ``<text>``).

    Returns:
        (requests in file order, failures in file order). ``source`` is ``yt:<YTID>``,
        ``start_s``/``end_s`` are exact to the millisecond.
    """
    text, name = _load(text_or_path, name)
    requests: list[ClipRequest] = []
    failures: list[SourceFailure] = []
    seen: set[str] = set()
    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        item = f"{name}:{lineno}: {stripped[:200]}"
        try:
            fields = next(csv.reader([stripped], skipinitialspace=True))
            if len(fields) != 4:
                raise _RowError(f"expected 4 fields (YTID, start, end, labels), got {len(fields)}")
            ytid, start_text, end_text, labels_text = (f.strip() for f in fields)
            start_ms, end_ms = _span_ms(start_text, end_text)
            ytid = _check_ytid(ytid)
            labels = _check_labels(labels_text.split(","), known_labels)
        except (_RowError, csv.Error) as e:
            failures.append(SourceFailure(item, MALFORMED, str(e)))
            continue
        clip_id = audioset_clip_id(ytid, start_ms)
        if clip_id in seen:
            failures.append(SourceFailure(item, DUPLICATE, f"segment {clip_id} listed again"))
            continue
        seen.add(clip_id)
        requests.append(
            ClipRequest(
                clip_id=clip_id,
                source=YOUTUBE_SCHEME + ytid,
                start_s=start_ms / 1000,
                end_s=end_ms / 1000,
                labels=labels,
                origin=f"{name}:{lineno}",
            )
        )
    return requests, failures


def read_audioset_strong(
    text_or_path: TextOrPath,
    *,
    known_labels: Collection[str] | None = None,
    name: str | None = None,
    segment_ms: int = SEGMENT_MS,
) -> tuple[list[ClipRequest], list[SourceFailure]]:
    """Parse an AudioSet strong-label TSV, grouping the event rows of a segment into one clip.

    Args:
        text_or_path: the file's text (anything containing a newline), or a path / storage URI.
        known_labels: label mids accepted; None accepts any well-formed mid.
        name: name used in ``origin`` / failure ``item``.
        segment_ms: segment length (AudioSet: 10 000 ms); events must lie inside it.

    Returns:
        (one request per segment in order of first appearance, failures). A clip spans
        ``[start, start + segment_ms)``; ``labels`` is the union of its present event labels in
        order of first appearance; ``events`` keeps every present event (times in ms relative to
        the clip start). A segment whose rows are all malformed or not present yields no clip.
    """
    text, name = _load(text_or_path, name)
    failures: list[SourceFailure] = []
    clips: dict[str, dict] = {}
    header_seen = False
    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        fields = [f.strip() for f in stripped.split("\t")]
        if not header_seen and fields[0] == "segment_id":
            header_seen = True
            continue
        item = f"{name}:{lineno}: {stripped[:200]}"
        try:
            if len(fields) not in (4, 5):
                raise _RowError(
                    "expected 4 tab-separated fields (segment_id, start_time_seconds, "
                    f"end_time_seconds, label) or 5 with 'present', got {len(fields)}"
                )
            segment_id, on_text, off_text, label = fields[:4]
            present = True
            if len(fields) == 5:
                if fields[4] not in ("PRESENT", "NOT_PRESENT"):
                    raise _RowError(f"present must be PRESENT or NOT_PRESENT, got {fields[4]!r}")
                present = fields[4] == "PRESENT"
            ytid, start_text = _split_segment_id(segment_id)
            start_ms = _ms(start_text, "segment start (ms)", scale=False)
            onset_ms, offset_ms = _span_ms(on_text, off_text)
            if offset_ms > segment_ms:
                raise _RowError(f"event ends at {offset_ms} ms, past the {segment_ms} ms segment")
            (label,) = _check_labels([label], known_labels)
        except _RowError as e:
            failures.append(SourceFailure(item, MALFORMED, str(e)))
            continue
        clip_id = audioset_clip_id(ytid, start_ms)
        clip = clips.setdefault(
            clip_id,
            {"ytid": ytid, "start_ms": start_ms, "labels": {}, "events": [], "line": lineno},
        )
        if present:
            clip["labels"].setdefault(label, None)
            clip["events"].append(LabelEvent(label, onset_ms, offset_ms))
    requests = [
        ClipRequest(
            clip_id=clip_id,
            source=YOUTUBE_SCHEME + clip["ytid"],
            start_s=clip["start_ms"] / 1000,
            end_s=(clip["start_ms"] + segment_ms) / 1000,
            labels=tuple(clip["labels"]),
            origin=f"{name}:{clip['line']}",
            events=tuple(clip["events"]),
        )
        for clip_id, clip in clips.items()
        if clip["labels"]
    ]
    return requests, failures


def _load(text_or_path: TextOrPath, name: str | None) -> tuple[str, str]:
    if isinstance(text_or_path, str) and "\n" in text_or_path:
        return text_or_path, name or "<text>"
    location = os.fspath(text_or_path)
    if "://" in location and not location.startswith("file://"):
        from sound_captions import storage  # remote URIs (s3://) go through the storage layer

        data = storage.read_bytes(location)
    else:
        data = Path(location.removeprefix("file://")).read_bytes()
    return data.decode("utf-8-sig"), name or location.rstrip("/").rsplit("/", 1)[-1]


def _ms(text: str, what: str, *, scale: bool = True) -> int:
    try:
        if scale:
            return seconds_to_ms(text)
        if not text.isdigit():
            raise ValueError(text)
        return int(text)
    except ValueError as e:
        raise _RowError(f"bad {what}: {text!r}") from e


def _span_ms(start_text: str, end_text: str) -> tuple[int, int]:
    start_ms = _ms(start_text, "start time")
    end_ms = _ms(end_text, "end time")
    if end_ms <= start_ms:
        raise _RowError(f"end ({end_text}) is not after start ({start_text})")
    return start_ms, end_ms


def _check_ytid(ytid: str) -> str:
    if not _YTID.match(ytid):
        raise _RowError(f"bad YouTube id: {ytid!r}")
    return ytid


def _split_segment_id(segment_id: str) -> tuple[str, str]:
    ytid, sep, start = segment_id.rpartition("_")  # YouTube ids may contain "_" themselves
    if not sep or not ytid:
        raise _RowError(f"segment_id must be <YTID>_<start ms>, got {segment_id!r}")
    return _check_ytid(ytid), start


def _check_labels(raw: list[str], known: Collection[str] | None) -> tuple[str, ...]:
    labels = tuple(dict.fromkeys(x.strip() for x in raw if x.strip()))
    if not labels:
        raise _RowError("no labels")
    for mid in labels:
        if not _MID.match(mid):
            raise _RowError(f"not an AudioSet label id: {mid!r}")
        if known is not None and mid not in known:
            raise _RowError(f"unknown label id: {mid!r}")
    return labels
