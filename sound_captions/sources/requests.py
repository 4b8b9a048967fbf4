"""Records shared by the source readers: one clip to fetch (:class:`ClipRequest`) and one row that
could not be used (:class:`SourceFailure`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from typing import Any

from sound_captions import reasons

Seconds = float

YOUTUBE_SCHEME = "yt:"

# Reason class of a source row that could not be parsed (wrong field count, bad number,
# end <= start, unknown label id). Download/decode reasons live in ``download.py``.
MALFORMED = reasons.MALFORMED


@dataclass(frozen=True)
class LabelEvent:
    """One strongly labelled event inside a clip, times relative to the clip start.

    Attributes:
        label: AudioSet machine id (``/m/09x0r``).
        onset_ms: event start, integer milliseconds from the clip start (>= 0).
        offset_ms: event end, integer milliseconds from the clip start (> onset_ms).
    """

    label: str
    onset_ms: int
    offset_ms: int


@dataclass(frozen=True)
class ClipRequest:
    """One clip to fetch and label.

    Attributes:
        clip_id: unique, filename-safe id; for AudioSet ``<YTID>_<start in integer ms>``
            (the strong-label ``segment_id`` format).
        source: where the media lives: ``yt:<YTID>`` (resolved with a URL template at download
            time), an http(s) URL, or a storage URI (local path, ``file://``, ``s3://``).
        start_s: segment start in the source (seconds), None for "from the beginning".
        end_s: segment end in the source (seconds), None for "to the end".
        labels: all AudioSet machine ids the source gives the clip, in source order.
        origin: where the request came from, e.g. ``balanced_train_segments.csv:17``.
        selected_labels: after :func:`~sound_captions.sources.select.select_clips`, the chosen
            labels present on the clip (empty for an explicit negative); empty before selection.
        negative: True when the clip was kept as an explicit negative (none of the chosen labels).
        events: strong labels with event times (empty for weakly labelled sources).
    """

    clip_id: str
    source: str
    start_s: Seconds | None
    end_s: Seconds | None
    labels: tuple[str, ...]
    origin: str
    selected_labels: tuple[str, ...] = ()
    negative: bool = False
    events: tuple[LabelEvent, ...] = field(default=(), compare=False)

    @property
    def ytid(self) -> str | None:
        """The YouTube id for ``yt:`` sources, else None."""
        if self.source.startswith(YOUTUBE_SCHEME):
            return self.source[len(YOUTUBE_SCHEME) :]
        return None

    def with_selection(self, selected: tuple[str, ...], *, negative: bool = False) -> ClipRequest:
        return replace(self, selected_labels=selected, negative=negative)

    def to_row(self) -> dict[str, Any]:
        """Plain dict (Arrow/Ray friendly: lists, no nested dataclasses)."""
        return {
            "clip_id": self.clip_id,
            "source": self.source,
            "start_s": self.start_s,
            "end_s": self.end_s,
            "labels": list(self.labels),
            "origin": self.origin,
            "selected_labels": list(self.selected_labels),
            "negative": self.negative,
            "event_labels": [e.label for e in self.events],
            "event_onset_ms": [e.onset_ms for e in self.events],
            "event_offset_ms": [e.offset_ms for e in self.events],
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ClipRequest:
        """Inverse of :meth:`to_row` (accepts numpy arrays where lists were written)."""

        def seq(key: str) -> list[Any]:
            value = row.get(key)
            return [] if value is None else list(value)

        events = tuple(
            LabelEvent(str(label), int(on), int(off))
            for label, on, off in zip(
                seq("event_labels"), seq("event_onset_ms"), seq("event_offset_ms"), strict=True
            )
        )
        return cls(
            clip_id=str(row["clip_id"]),
            source=str(row["source"]),
            start_s=optional_seconds(row.get("start_s")),
            end_s=optional_seconds(row.get("end_s")),
            labels=tuple(str(x) for x in seq("labels")),
            origin=str(row.get("origin", "")),
            selected_labels=tuple(str(x) for x in seq("selected_labels")),
            negative=bool(row.get("negative", False)),
            events=events,
        )


def optional_seconds(value: Any) -> Seconds | None:
    """None, NaN (how Arrow nulls arrive in numpy batches) → None; numbers → float."""
    if value is None:
        return None
    seconds = float(value)
    return None if math.isnan(seconds) else seconds


@dataclass(frozen=True)
class SourceFailure:
    """A source row that could not become a :class:`ClipRequest`.

    Attributes:
        item: the row's location and text, e.g. ``balanced_train_segments.csv:12: abc, 1.0, ...``.
        reason: reason class, ``malformed`` for rows that do not parse.
        message: what was wrong, for a person.
    """

    item: str
    reason: str
    message: str

    def to_row(self) -> dict[str, Any]:
        return {"item": self.item, "reason": self.reason, "message": self.message}


def audioset_clip_id(ytid: str, start_ms: int) -> str:
    """``<YTID>_<start ms>``, the AudioSet strong-label segment id format (``abc_30000``)."""
    return f"{ytid}_{start_ms}"


def seconds_to_ms(text: str) -> int:
    """Decimal seconds text (``"30.000"``, ``"4.5"``) → integer milliseconds, exactly.

    Raises:
        ValueError: not a finite non-negative decimal number.
    """
    try:
        value = Decimal(text.strip())
    except InvalidOperation as e:
        raise ValueError(f"not a number: {text!r}") from e
    if not value.is_finite() or value < 0:
        raise ValueError(f"not a finite non-negative number: {text!r}")
    return int((value * 1000).to_integral_value())
