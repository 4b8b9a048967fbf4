"""Events manifest CSV → clip requests with per-second truth.

    source,onset_s,offset_s,label
    videos/lecture-01.mp4,3.0,6.0,Applause
    videos/lecture-01.mp4,12.5,14.0,/m/0k4j      # as many rows per source as it has events

One request per source: the whole medium (its own duration bounds it), labelled with every
class its events name, each window labelled by the events that cover it (see
``dataset/stages.second_labels``); seconds outside every event are negatives for those classes.
``label`` is an AudioSet id or class name. Relative sources resolve against the CSV's folder. A
row that cannot be used is a recorded :class:`SourceFailure`, and the others still count.
"""

from __future__ import annotations

from sound_captions import storage
from sound_captions.ontology import Ontology
from sound_captions.sources.manifest import (
    _parse_time,
    _resolve_source,
    csv_rows,
    make_clip_id,
    parse_labels,
)
from sound_captions.sources.requests import ClipRequest, LabelEvent, SourceFailure

EVENTS_COLUMNS = ("source", "onset_s", "offset_s", "label")


def read_events(uri: str, ontology: Ontology | None = None) -> tuple[list[ClipRequest], list[SourceFailure]]:
    """Parse an events manifest at ``uri`` (local or s3://)."""
    text = storage.read_text(uri)
    base = uri.rsplit("/", 1)[0] if storage.is_s3(uri) else str(storage.local_path(uri).parent)
    return parse_events(text, ontology or Ontology.load(), base=base, origin=uri)


def parse_events(
    text: str, ontology: Ontology, *, base: str | None = None, origin: str = "events"
) -> tuple[list[ClipRequest], list[SourceFailure]]:
    failures: list[SourceFailure] = []
    by_source: dict[str, dict] = {}
    def parse(source: str, onset_text: str, offset_text: str, label_text: str):
        if not source:
            raise ValueError("empty source")
        onset_s, offset_s = _parse_time(onset_text, "onset_s"), _parse_time(offset_text, "offset_s")
        if onset_s is None or offset_s is None:
            raise ValueError("an event needs both onset_s and offset_s")
        if offset_s <= onset_s:
            raise ValueError(f"offset_s ({offset_s}) is not after onset_s ({onset_s})")
        labels = parse_labels(label_text, ontology)
        if len(labels) != 1:
            raise ValueError(f"one label per event row, got {label_text!r}")
        return source, onset_s, offset_s, labels

    for item, (source, onset_s, offset_s, labels) in csv_rows(text, EVENTS_COLUMNS, origin, failures, parse):
        resolved = _resolve_source(source, base)
        clip = by_source.setdefault(resolved, {"labels": [], "events": [], "item": item})
        if labels[0] not in clip["labels"]:
            clip["labels"].append(labels[0])
        clip["events"].append(LabelEvent(labels[0], int(round(onset_s * 1000)), int(round(offset_s * 1000))))
    requests = [
        ClipRequest(
            make_clip_id(source, None, None), source, None, None, tuple(clip["labels"]), clip["item"],
            events=tuple(sorted(clip["events"], key=lambda e: (e.onset_ms, e.offset_ms, e.label))),
        )
        for source, clip in by_source.items()
    ]
    return requests, failures
