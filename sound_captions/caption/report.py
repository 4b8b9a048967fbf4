"""A caption run's results → ``<out>/_report/report.parquet`` (one row per input found) and
``summary.txt`` (what a person reads first)."""

from __future__ import annotations

import io
import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from sound_captions import storage

REPORT_DIR = "_report"


@dataclass
class VideoResult:
    input: str
    status: str  # captioned | skipped | failed
    reason: str = ""
    message: str = ""
    output_vtt: str = ""
    duration_s: float = 0.0
    cue_count: int = 0
    top_labels: list[str] = field(default_factory=list)
    sdh_vtt: str = ""  # the combined speech + sound track, with --merge-with-speech


@dataclass
class CaptionRun:
    results: list[VideoResult]
    wall_s: float
    report_uri: str
    never_captioned: dict[str, str] = field(default_factory=dict)  # mid → "name: why"
    derived_captions: dict[str, str] = field(default_factory=dict)  # mid → text from its name

    @property
    def failed(self) -> list[VideoResult]:
        return [r for r in self.results if r.status == "failed"]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for r in self.results:
            out[r.status] += 1
        return dict(out)


REPORT_SCHEMA = pa.schema(
    [
        ("input", pa.string()), ("status", pa.string()), ("reason", pa.string()), ("message", pa.string()),
        ("output_vtt", pa.string()), ("duration_s", pa.float64()), ("cue_count", pa.int32()), ("top_labels", pa.list_(pa.string())),
        ("sdh_vtt", pa.string()),
    ]
)


def _one_line(message: str, limit: int = 300) -> str:
    """ffmpeg's multi-line stderr as one readable line of the summary (the report keeps it all)."""
    text = " ".join(message.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def summary_text(run: CaptionRun) -> str:
    counts = run.counts()
    hours = sum(r.duration_s for r in run.results if r.status == "captioned") / 3600
    lines = [
        "sound-captions run report",
        f"captioned: {counts.get('captioned', 0)}   skipped: {counts.get('skipped', 0)}   failed: {counts.get('failed', 0)}",
        f"media captioned: {hours:.3f} h   wall time: {run.wall_s:.1f} s"
        + (f"   throughput: {hours / (run.wall_s / 3600):.1f} h of media per wall-hour" if run.wall_s > 0 and hours > 0 else ""),
    ]
    if run.derived_captions:
        lines.append("caption texts derived from class names (not in the vocabulary):")
        lines += [f"  {mid}: {text}" for mid, text in sorted(run.derived_captions.items())]
    if run.never_captioned:
        lines.append("classes that can never be captioned:")
        lines += [f"  {mid}: {why}" for mid, why in run.never_captioned.items()]
    failed = run.failed
    if failed:
        lines.append("failed inputs:")
        lines += [f"  {r.input}: {r.reason}: {_one_line(r.message)}" for r in failed]
    return "\n".join(lines) + "\n"


def write_report(out: str, run: CaptionRun) -> None:
    table = pa.Table.from_pylist([asdict(r) for r in run.results], schema=REPORT_SCHEMA)
    table = table.replace_schema_metadata(
        {b"never_captioned": json.dumps(run.never_captioned).encode(), b"derived_captions": json.dumps(run.derived_captions).encode()}
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    storage.write_bytes(storage.join(out, REPORT_DIR, "report.parquet"), buffer.getvalue())
    storage.write_text(storage.join(out, REPORT_DIR, "summary.txt"), summary_text(run))
