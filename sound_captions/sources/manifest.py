"""User manifest CSV (``source,start_s,end_s,labels``) → ``ClipRequest``s.

- ``source``: a path (relative paths are relative to the manifest's folder), ``file://``,
  ``s3://`` or ``http(s)://`` URI;
- ``start_s``, ``end_s``: the segment in seconds; empty means the start / the end;
- ``labels``: AudioSet display names or mids, separated by ``;`` (a quoted comma-separated list of
  mids, as in AudioSet's own CSVs, works too). An empty field makes an explicit negative.

Malformed rows become ``SourceFailure``s; the rest are used.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re

from sound_captions import reasons, storage
from sound_captions.ontology import Ontology, UnknownLabelError
from sound_captions.sources.requests import ClipRequest, SourceFailure

MANIFEST_COLUMNS = ("source", "start_s", "end_s", "labels")


def _parse_time(text: str, name: str) -> float | None:
    text = (text or "").strip()
    if not text:
        return None
    value = float(text)  # ValueError is reported by the caller
    if value < 0 or value != value:
        raise ValueError(f"{name} must be a non-negative number, got {text!r}")
    return value


def parse_labels(text: str, ontology: Ontology) -> tuple[str, ...]:
    """``"Dog; Bark"`` or ``"/m/0bt9lr,/m/05tny_"`` → mids (order kept, duplicates dropped)."""
    mids: list[str] = []
    for piece in (p.strip() for p in (text or "").split(";")):
        if not piece:
            continue
        try:
            mids.append(ontology.resolve(piece))
        except UnknownLabelError:
            parts = [p.strip() for p in piece.split(",") if p.strip()]
            if len(parts) < 2:
                raise
            mids.extend(ontology.resolve(p) for p in parts)
    return tuple(dict.fromkeys(mids))


def csv_rows(text: str, columns: tuple[str, ...], origin: str, failures: list[SourceFailure], parse):
    """The data rows of a source CSV as ``(item, parse(*stripped fields))``: blank and ``#``
    lines and a header of ``columns`` skipped; a row with another field count, or that ``parse``
    refuses (``UnknownLabelError``, ``ValueError``), is a recorded failure."""
    header_checked = False
    for line_no, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if not header_checked:
            header_checked = True
            if [c.strip().lower() for c in row[: len(columns)]] == list(columns):
                continue
        item = f"{origin}:{line_no}"
        if len(row) != len(columns):
            failures.append(SourceFailure(item, reasons.MALFORMED, f"expected {len(columns)} fields ({','.join(columns)}), got {len(row)}: {row!r}"))
            continue
        try:
            yield item, parse(*(c.strip() for c in row))
        except UnknownLabelError as exc:
            failures.append(SourceFailure(item, reasons.UNKNOWN_LABEL, str(exc)))
        except ValueError as exc:
            failures.append(SourceFailure(item, reasons.MALFORMED, str(exc)))


def make_clip_id(source: str, start_s: float | None, end_s: float | None) -> str:
    """A readable, unique, filesystem-safe id: ``<stem>_<start ms>-<end ms>_<hash8>``."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", os.path.splitext(source.rstrip("/").rsplit("/", 1)[-1])[0])[:40] or "clip"
    start_ms = "s" if start_s is None else str(int(round(start_s * 1000)))
    end_ms = "e" if end_s is None else str(int(round(end_s * 1000)))
    digest = hashlib.sha1(f"{source}|{start_s}|{end_s}".encode()).hexdigest()[:8]
    return f"{stem}_{start_ms}-{end_ms}_{digest}"


def _resolve_source(source: str, base: str | None) -> str:
    if "://" in source or source.startswith("yt:") or os.path.isabs(source) or base is None:
        return source
    return storage.join(base, source)


def read_manifest(uri: str, ontology: Ontology | None = None) -> tuple[list[ClipRequest], list[SourceFailure]]:
    """Parse a manifest CSV at ``uri`` (local or s3://)."""
    text = storage.read_text(uri)
    base = None if storage.is_s3(uri) else str(storage.local_path(uri).parent)
    if storage.is_s3(uri):
        base = uri.rsplit("/", 1)[0]
    return parse_manifest(text, ontology or Ontology.load(), base=base, origin=uri)


def parse_manifest(
    text: str, ontology: Ontology, *, base: str | None = None, origin: str = "manifest"
) -> tuple[list[ClipRequest], list[SourceFailure]]:
    requests: list[ClipRequest] = []
    failures: list[SourceFailure] = []
    seen: set[str] = set()
    def parse(source: str, start_text: str, end_text: str, labels_text: str):
        if not source:
            raise ValueError("empty source")
        start_s = _parse_time(start_text, "start_s")
        end_s = _parse_time(end_text, "end_s")
        if start_s is not None and end_s is not None and end_s <= start_s:
            raise ValueError(f"end_s ({end_s}) is not after start_s ({start_s})")
        return source, start_s, end_s, parse_labels(labels_text, ontology)

    for item, (source, start_s, end_s, labels) in csv_rows(text, MANIFEST_COLUMNS, origin, failures, parse):
        resolved = _resolve_source(source, base)
        clip_id = make_clip_id(resolved, start_s, end_s)
        if clip_id in seen:
            failures.append(SourceFailure(item, reasons.DUPLICATE, f"the same source and segment appears twice: {source}"))
            continue
        seen.add(clip_id)
        requests.append(ClipRequest(clip_id, resolved, start_s, end_s, labels, origin))
    return requests, failures


def write_manifest(rows: list[tuple[str, float | None, float | None, list[str]]], uri: str) -> None:
    """Write a manifest CSV (labels joined with ``;``)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(MANIFEST_COLUMNS)
    for source, start_s, end_s, labels in rows:
        writer.writerow([source, "" if start_s is None else f"{start_s:g}", "" if end_s is None else f"{end_s:g}", ";".join(labels)])
    storage.write_text(uri, out.getvalue())
