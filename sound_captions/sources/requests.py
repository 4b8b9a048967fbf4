"""The records every source produces: a clip to fetch (``ClipRequest``) or a row that could not
be parsed (``SourceFailure``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClipRequest:
    """One labelled segment of a medium.

    ``source`` is a local path, a ``file://``/``s3://``/``http(s)://`` URI, or ``yt:<YTID>``;
    ``start_s``/``end_s`` select the segment (``None``: from the start / to the end);
    ``labels`` are AudioSet mids; ``origin`` names the list the request came from.
    """

    clip_id: str
    source: str
    start_s: float | None
    end_s: float | None
    labels: tuple[str, ...]
    origin: str = ""


@dataclass(frozen=True)
class SourceFailure:
    """A source row that could not become a request (``reason``: ``malformed`` or ``unknown_label``)."""

    item: str
    reason: str
    message: str
