"""WebVTT text + per-second scores Parquet → the data the preview's timeline draws.

The timeline has two parts: *lanes* of cue bars (one lane per distinct sound caption, a cue
with two lines lands in two lanes) and a heat map (rows = labels, columns = seconds, colour =
probability). Times stay in integer milliseconds until they are handed to the page.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

import numpy as np

from sound_captions.caption.cues import Cue, CueFileError, Milliseconds, read_cues
from sound_captions.caption.cues import parse_timestamp_ms as _timestamp_ms
from sound_captions.caption.style import base_caption

#: How many heat-map rows a page shows by default (labels ranked by their peak probability).
DEFAULT_MAX_ROWS = 16


class PreviewInputError(ValueError):
    """A captions or scores file is not in the expected format; the message says what is wrong."""


@dataclass(frozen=True)
class ScoreGrid:
    """Per-second probabilities of the shown labels.

    ``probs`` has shape (len(labels), n_seconds), float32 in [0, 1]; row *i* is ``labels[i]``
    whose display name is ``names[i]``; column *k* is second *k* = [k, k+1) s.
    ``total_labels`` is the number of labels in the scores file (rows shown ≤ total).
    """

    labels: tuple[str, ...]
    names: tuple[str, ...]
    probs: np.ndarray
    total_labels: int

    @property
    def n_seconds(self) -> int:
        return int(self.probs.shape[1])


def parse_timestamp_ms(text: str) -> Milliseconds:
    """``"01:02:03.456"`` or ``"02:03.456"`` → integer milliseconds."""
    try:
        return _timestamp_ms(text)
    except CueFileError as exc:
        raise PreviewInputError(str(exc)) from None


def parse_vtt(text: str) -> list[Cue]:
    """The cues of a WebVTT file (the one reader, ``caption/cues.py``); a bad file is a
    :class:`PreviewInputError`."""
    try:
        return read_cues(text)
    except CueFileError as exc:
        raise PreviewInputError(str(exc)) from None


def lane_key(line: str) -> str:
    """The lane a caption line belongs to: ``"[dog barking … continues]"`` → ``"[dog barking]"``."""
    return base_caption(line)


def cue_lanes(cues: list[Cue]) -> tuple[list[str], list[tuple[int, Milliseconds, Milliseconds]]]:
    """Lanes in order of first appearance, and bars ``(lane index, start_ms, end_ms)``."""
    lanes: list[str] = []
    bars: list[tuple[int, Milliseconds, Milliseconds]] = []
    for cue in cues:
        for line in cue.text.split("\n"):
            if not line.strip():
                continue
            key = lane_key(line)
            if key not in lanes:
                lanes.append(key)
            bars.append((lanes.index(key), cue.start_ms, cue.end_ms))
    return lanes, bars


def read_scores(data: bytes, max_rows: int = DEFAULT_MAX_ROWS) -> ScoreGrid:
    """Read a ``*.scores.parquet`` file and keep the ``max_rows`` labels with the highest peak.

    Expected: column ``second`` (int) and one float column per label mid, schema metadata
    ``labels`` (JSON list of mids, the column order) and ``label_names`` (JSON mid → name).
    Missing seconds stay 0; rows are ordered by peak probability, highest first.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(pa.BufferReader(data), use_threads=False)
    meta = table.schema.metadata or {}
    if "second" not in table.column_names:
        raise PreviewInputError("scores file has no 'second' column")
    if b"labels" in meta:
        labels = list(json.loads(meta[b"labels"]))
    else:
        labels = [name for name in table.column_names if name != "second"]
    missing = [mid for mid in labels if mid not in table.column_names]
    if missing:
        raise PreviewInputError(f"scores file lacks columns for labels {missing[:5]}")
    names_by_mid: dict[str, str] = (
        json.loads(meta[b"label_names"]) if b"label_names" in meta else {}
    )

    seconds = table.column("second").to_numpy(zero_copy_only=False).astype(np.int64)
    if seconds.size and seconds.min() < 0:
        raise PreviewInputError("scores file has negative seconds")
    n_seconds = int(seconds.max()) + 1 if seconds.size else 0
    probs = np.zeros((len(labels), n_seconds), dtype=np.float32)
    for row, mid in enumerate(labels):
        values = table.column(mid).to_numpy(zero_copy_only=False).astype(np.float32)
        probs[row, seconds] = np.nan_to_num(values, nan=0.0)
    np.clip(probs, 0.0, 1.0, out=probs)

    peaks = probs.max(axis=1) if n_seconds else np.zeros(len(labels), dtype=np.float32)
    order = np.argsort(-peaks, kind="stable")[:max_rows]
    return ScoreGrid(
        labels=tuple(labels[i] for i in order),
        names=tuple(names_by_mid.get(labels[i], labels[i]) for i in order),
        probs=probs[order],
        total_labels=len(labels),
    )


def grid_payload(grid: ScoreGrid) -> dict:
    """The grid as JSON-able data for the page: probabilities quantised to bytes (0–255) in
    row-major order, base64-encoded, so a two-hour film with 16 rows stays ~150 kB."""
    quantised = np.rint(grid.probs * 255.0).astype(np.uint8)
    return {
        "labels": list(grid.labels),
        "names": list(grid.names),
        "seconds": grid.n_seconds,
        "totalLabels": grid.total_labels,
        "probsB64": base64.b64encode(quantised.tobytes(order="C")).decode("ascii"),
    }
