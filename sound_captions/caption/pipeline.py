"""Video library → per-video WebVTT + per-second scores + one run report (Ray Data).

    discover ─► skip done ─► decode in chunks (CPU) ─► log-mel (CPU) ─► CNN (actor pool, GPU/CPU)
             ─► (driver) gather per video ─► smooth ─► cues ─► .scores.parquet, then .vtt

Rows between stages are one second each (``kind == "window"``), plus one ``"end"`` row per
video carrying its length and one ``"error"`` row for a video that failed, so memory is bounded
by Ray's streaming executor rather than by the length of a video. The driver only keeps the
small per-second score vectors of videos in flight.
"""

from __future__ import annotations

import io
import json
import logging
import re
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sound_captions import storage
from sound_captions.audio import DecodeError, stream_audio
from sound_captions.bundle import ModelBundle, load_bundle
from sound_captions.caption.fetch import FetchError, FetchOptions, fetched
from sound_captions.caption.inputs import InputFailure, MediaItem, discover
from sound_captions.caption.postprocess import Cue, PostprocessConfig, scores_to_cues
from sound_captions.caption.speech import find_speech_track, merge_tracks, read_speech_cues
from sound_captions.caption.vocabulary import run_caption_texts
from sound_captions.caption.vtt import render_vtt
from sound_captions.context import score_embeddings, sequence_index, silence_embedding
from sound_captions.features import (
    FeatureConfig,
    frame_windows,
    pin_torch_threads,
    spectrograms_where,
    to_model_input,
)
from sound_captions.paths import join_inside

log = logging.getLogger(__name__)

REPORT_DIR = "_report"
_NOTE = re.compile(r"^NOTE sound-captions bundle=(\S+) input=(.*)$", re.M)


@dataclass(frozen=True)
class CaptionOptions:
    """A caption run's settings (the same keys on the CLI and in ``jobs/`` configs).

    Attributes:
        out: output folder (local or ``s3://``); mirrors the inputs' layout.
        model: model bundle URI.
        force: caption again even when the outputs are up to date.
        chunk_s: seconds of audio a decode worker reads from ffmpeg at a time.
        decode_cpus / decode_memory_mb: resources of one decode task (ffmpeg + one chunk + one
            output block).
        feature_cpus / feature_memory_mb: resources of one spectrogram task.
        feature_batch_size: windows per spectrogram batch.
        inference_batch_size: windows per model forward pass.
        inference_actors: upper size of the inference actor pool.
        cpus_per_actor / gpus_per_actor: resources of one inference actor (``num_gpus`` when > 0).
        postprocess: smoothing and cue rules.
        vocabulary: CSV replacing the bundle's caption texts.
        ffmpeg: ffmpeg binary (default: imageio-ffmpeg's).
        fetch: yt-dlp settings for URL inputs.
        merge_with_speech: folder of speech subtitles; writes ``<rel>.sdh.vtt`` where one exists.
        max_block_mb: Ray Data block size for this run (bounds what a worker buffers).
        object_store_limit_mb: cap on the object store memory this run's stages may fill.
    """

    out: str
    model: str
    force: bool = False
    chunk_s: int = 60
    decode_cpus: float = 1.0
    decode_memory_mb: int = 512
    feature_cpus: float = 1.0
    feature_memory_mb: int = 640
    feature_batch_size: int = 64
    inference_batch_size: int = 256
    inference_actors: int = 1
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    vocabulary: str | None = None
    ffmpeg: str | None = None
    fetch: FetchOptions = field(default_factory=FetchOptions)
    max_block_mb: int = 16
    object_store_limit_mb: int | None = None
    merge_with_speech: str | None = None


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


# ---------------------------------------------------------------- stages (run on Ray workers)


def _rows(video: int, kind: str, seconds: np.ndarray, n_seconds: int, message: str, windows: np.ndarray) -> dict:
    n = len(seconds)
    return {
        "video": np.full(n, video, dtype=np.int64),
        "kind": np.asarray([kind] * n, dtype=object),
        "second": np.asarray(seconds, dtype=np.int32),
        "n_seconds": np.full(n, n_seconds, dtype=np.int32),
        "message": np.asarray([message] * n, dtype=object),
        "window": windows,
    }


def _failure(exc: Exception, uri: str) -> str:
    """A decode/fetch exception → ``"reason: message"`` for the report."""
    if isinstance(exc, DecodeError):
        reason = exc.reason
        if storage.is_s3(uri) and (reason == "not_found" or re.search(r"\b40[134]\b|Forbidden|Access Denied", str(exc))):
            reason = "unreadable"  # a missing object or one we may not read
        elif reason == "not_found":
            reason = "unavailable"
        return f"{reason}: {exc}"
    if isinstance(exc, FetchError):
        return f"{exc.reason}: {exc}"
    return f"other: {type(exc).__name__}: {exc}"


def decode_chunks(batch: dict, feature_config: dict, chunk_s: int, ffmpeg: str | None = None, fetch: dict | None = None):
    """One video per batch → batches of one-second window rows, then an end (or error) row.

    URLs are first fetched with yt-dlp into a scratch folder on this worker (deleted after);
    local files and ``s3://`` objects (through a presigned URL) are decoded in place. ffmpeg's
    output is read ``chunk_s`` seconds at a time, so a worker holds one chunk, not the video.
    """
    cfg = FeatureConfig.from_dict(feature_config)
    empty = np.zeros((1, cfg.window_samples), dtype=np.float32)
    for video, uri in zip(batch["video"], batch["uri"], strict=True):
        video, uri = int(video), str(uri)
        second = 0
        try:
            with fetched(uri, FetchOptions(**(fetch or {}))) as source:
                carry = np.zeros(0, dtype=np.float32)
                for chunk in stream_audio(source, chunk_s=chunk_s, sample_rate_hz=cfg.sample_rate_hz, ffmpeg=ffmpeg):
                    carry = np.concatenate([carry, chunk]) if carry.size else chunk
                    whole = carry.size // cfg.window_samples
                    if whole:
                        windows = carry[: whole * cfg.window_samples].reshape(whole, cfg.window_samples)
                        carry = carry[whole * cfg.window_samples :].copy()
                        yield _rows(video, "window", np.arange(second, second + whole), -1, "", windows)
                        second += whole
                tail = frame_windows(carry, cfg)  # the last partial second: padded if >= 0.5 s
                if len(tail):
                    yield _rows(video, "window", np.arange(second, second + len(tail)), -1, "", tail)
                    second += len(tail)
            if second == 0:
                yield _rows(video, "error", np.array([0]), 0, "empty: the medium has no audio longer than half a second", empty)
            else:
                yield _rows(video, "end", np.array([0]), second, "", empty)
        except Exception as exc:  # noqa: BLE001 - one bad input fails alone, with its reason
            yield _rows(video, "error", np.array([0]), 0, _failure(exc, uri), empty)


def window_level_dbfs(windows) -> np.ndarray:
    """RMS level of each window in dBFS (digital silence → -200)."""
    x = np.asarray(windows, dtype=np.float32).reshape(len(windows), -1)
    return (10.0 * np.log10(np.maximum(np.mean(np.square(x, dtype=np.float64), axis=1), 1e-20))).astype(np.float32)


def add_features(batch: dict, feature_config: dict, threads: int = 1) -> dict:
    """Window rows → spectrogram rows (other rows get zeros)."""
    pin_torch_threads(threads)
    windows = batch.pop("window")
    batch["level_dbfs"] = window_level_dbfs(windows)  # for the bundle's energy gate
    cfg = FeatureConfig.from_dict(feature_config)
    batch["spectrogram"] = spectrograms_where(windows, batch["kind"] == "window", cfg, dtype=cfg.image_dtype)
    return batch


class Classifier:
    """Ray Data actor: spectrogram rows → per-label probabilities, or, for a model with audio
    context, per-second embeddings that the driver's ``SecondScorer`` turns into probabilities
    once a video's neighbouring seconds are all known (the model loads once)."""

    def __init__(self, model: str, threads: int = 1):
        import torch

        self.bundle = load_bundle(model)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device.type == "cpu":
            pin_torch_threads(threads)
        self.model = self.bundle.build_model().to(self.device)
        self.context = self.bundle.context
        self.width = len(self.bundle.labels)
        if self.context:
            with torch.inference_mode():
                self.width = int(self.model.embed(torch.zeros(1, *self.bundle.input_shape, device=self.device)).shape[1])

    def __call__(self, batch: dict) -> dict:
        import torch

        spec = batch.pop("spectrogram")
        is_window = np.asarray(batch["kind"] == "window", dtype=bool)
        out = np.zeros((len(is_window), self.width), dtype=np.float32)
        if is_window.any():
            with torch.inference_mode():
                x = to_model_input(spec[is_window]).to(self.device)
                with torch.autocast(device_type=self.device.type, enabled=self.device.type == "cuda"):
                    y = self.model.embed(x) if self.context else torch.sigmoid(self.model(x).float())
                out[is_window] = y.float().cpu().numpy()
        batch["embedding" if self.context else "scores"] = out
        return batch


class SecondScorer:
    """Driver side: one video's per-second outputs (in second order) → its scores (T, L).

    For a model with context, the embeddings of seconds k-c … k+c go through the model's head
    (silence outside the video, as in training); the bundle's energy gate then zeroes every
    second quieter than ``gate_dbfs``.
    """

    def __init__(self, bundle: ModelBundle):
        self.bundle = bundle
        self.model = bundle.build_model() if bundle.context else None
        if self.model is not None:
            self.silence = silence_embedding(self.model, bundle.feature_config)

    def __call__(self, outputs: np.ndarray, level_dbfs: np.ndarray | None) -> np.ndarray:
        import torch

        if self.model is not None:
            outputs = score_embeddings(self.model, torch.as_tensor(outputs), sequence_index(len(outputs), self.bundle.context), self.silence)
        scores = np.array(outputs, dtype=np.float32)  # a copy: the gate writes into it
        if self.bundle.gate_dbfs is not None and level_dbfs is not None:
            scores[np.asarray(level_dbfs) < self.bundle.gate_dbfs] = 0.0  # below the gate: never captioned
        return scores


# ---------------------------------------------------------------- outputs


def output_uris(out: str, item: MediaItem) -> tuple[str, str]:
    """``<out>/<rel>.vtt`` and ``<out>/<rel>.scores.parquet``, checked to be inside ``out``."""
    return join_inside(out, item.rel + ".vtt"), join_inside(out, item.rel + ".scores.parquet")


def is_done(out: str, item: MediaItem, bundle_digest: str) -> bool:
    """Outputs exist for the same bundle and the same input version (the .vtt is written last)."""
    try:
        vtt_uri, scores_uri = output_uris(out, item)
        if not storage.exists(vtt_uri) or not storage.exists(scores_uri):
            return False
        match = _NOTE.search(storage.read_text(vtt_uri))
    except storage.StorageError:
        return False
    return bool(match) and match.group(1) == bundle_digest and match.group(2).strip() == item.version


def scores_table(scores: np.ndarray, bundle: ModelBundle, extra: dict | None = None) -> pa.Table:
    columns = {"second": pa.array(np.arange(scores.shape[0], dtype=np.int32))}
    for j, mid in enumerate(bundle.labels):
        columns[mid] = pa.array(scores[:, j].astype(np.float32))
    metadata = {
        "labels": json.dumps(bundle.labels),
        "label_names": json.dumps(bundle.label_names),
        "thresholds": json.dumps(bundle.thresholds),
        **{k: json.dumps(v) for k, v in (extra or {}).items()},
    }
    return pa.table(columns).replace_schema_metadata({k.encode(): v.encode() for k, v in metadata.items()})


def write_outputs(out: str, item: MediaItem, scores: np.ndarray, cues: list[Cue], bundle: ModelBundle, digest: str) -> str:
    """Write ``.scores.parquet`` then ``.vtt`` (the completion mark), each atomically."""
    vtt_uri, scores_uri = output_uris(out, item)
    buffer = io.BytesIO()
    pq.write_table(scores_table(scores, bundle, {"bundle": digest, "input_version": item.version, "input": item.uri}), buffer)
    storage.write_bytes(scores_uri, buffer.getvalue())
    vtt = render_vtt(cues)
    note = f"NOTE sound-captions bundle={digest} input={item.version}\n\n"
    vtt = vtt.replace("WEBVTT\n\n", "WEBVTT\n\n" + note, 1) if vtt.startswith("WEBVTT\n\n") else vtt.rstrip("\n") + "\n\n" + note
    storage.write_text(vtt_uri, vtt)
    return vtt_uri


def write_sdh(out: str, item: MediaItem, cues: list[Cue], speech_root: str) -> str | None:
    """Write ``<out>/<rel>.sdh.vtt`` when ``<speech_root>/<rel>.vtt|.srt`` exists."""
    speech_uri = find_speech_track(speech_root, item.rel)
    if speech_uri is None:
        return None
    uri = join_inside(out, item.rel + ".sdh.vtt")
    storage.write_text(uri, merge_tracks(read_speech_cues(speech_uri), cues))
    return uri


def top_labels(cues: list[Cue], k: int = 3) -> list[str]:
    seconds: dict[str, int] = defaultdict(int)
    for cue in cues:
        seconds[cue.label] += cue.duration_ms
    return [label for label, _ in sorted(seconds.items(), key=lambda kv: -kv[1])[:k]]


# ---------------------------------------------------------------- the run


def caption_library(inputs: list[str], options: CaptionOptions, *, progress=None) -> CaptionRun:
    """Caption every medium found in ``inputs`` on the current Ray cluster."""
    import ray

    started = time.perf_counter()
    out = storage.check_uri(options.out)
    bundle = load_bundle(options.model)
    captions = run_caption_texts(bundle.labels, bundle.label_names, bundle.caption_text, bundle.training, options.vocabulary)
    for line in captions.warnings(bundle.label_names):
        log.warning(line)
    caption_text = captions.texts
    never = {m: f"{bundle.label_names.get(m, m)}: {why}" for m, why in sorted(captions.never.items())}
    digest = bundle.digest()
    items, input_failures = discover(inputs)
    results: list[VideoResult] = [VideoResult(f.input, f.status, f.reason, f.message) for f in input_failures]
    todo: list[MediaItem] = []
    for item in items:
        if item.size_bytes == 0:
            results.append(VideoResult(item.uri, "failed", "empty", "zero-length file"))
        elif not options.force and is_done(out, item, digest):
            results.append(VideoResult(item.uri, "skipped", "up_to_date", "outputs exist for this model and input version", output_uris(out, item)[0]))
        else:
            todo.append(item)
    if todo:
        cfg = bundle.feature_config
        ds = ray.data.from_items([{"video": i, "uri": item.uri} for i, item in enumerate(todo)], override_num_blocks=len(todo))
        # This run's own context (shared by the datasets derived from ``ds``): small blocks, so
        # a worker hands on ~4 minutes of windows at a time (16 MiB of float32 at 16 kHz)
        # instead of buffering 128 MiB; optionally a cap on the object store this run may fill.
        context = ds.context
        context.target_max_block_size = options.max_block_mb * 2**20
        if options.object_store_limit_mb:
            context.execution_options.resource_limits = context.execution_options.resource_limits.copy(
                object_store_memory=options.object_store_limit_mb * 2**20
            )
        ds = ds.map_batches(
            decode_chunks,
            fn_kwargs={"feature_config": cfg.to_dict(), "chunk_s": options.chunk_s, "ffmpeg": options.ffmpeg, "fetch": asdict(options.fetch)},
            batch_size=1,
            num_cpus=options.decode_cpus,
            # The memory figures are real requests (ffmpeg + one chunk + Ray's output block
            # buffer of at most 128 MiB; a batch of windows and spectrograms) and, being
            # different, keep decode, features and the actor pool as separate operators that
            # Ray sizes on their own instead of fusing them into the inference actors.
            memory=options.decode_memory_mb * 2**20,
        )
        ds = ds.map_batches(
            add_features,
            fn_kwargs={"feature_config": cfg.to_dict(), "threads": max(1, int(options.feature_cpus))},
            batch_size=options.feature_batch_size,
            num_cpus=options.feature_cpus,
            memory=options.feature_memory_mb * 2**20,
        )
        ds = ds.map_batches(
            Classifier,
            fn_constructor_kwargs={"model": options.model, "threads": max(1, int(options.cpus_per_actor))},
            batch_size=options.inference_batch_size,
            num_cpus=options.cpus_per_actor,
            num_gpus=options.gpus_per_actor or None,
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, options.inference_actors)),
        )
        results += _gather(ds, todo, out, bundle, caption_text, digest, options, progress)
    run = CaptionRun(
        results=results, wall_s=time.perf_counter() - started, report_uri=storage.join(out, REPORT_DIR, "report.parquet"),
        never_captioned=never, derived_captions=captions.derived,
    )
    write_report(out, run)
    return run


def _gather(ds, todo, out, bundle, caption_text, digest, options, progress) -> list[VideoResult]:
    pending: dict[int, dict] = defaultdict(lambda: {"seconds": [], "scores": [], "levels": [], "n": None, "error": None})
    finished: dict[int, VideoResult] = {}
    scorer = SecondScorer(bundle)
    output = "embedding" if bundle.context else "scores"

    def finish(video: int) -> None:
        state = pending.pop(video)
        item = todo[video]
        if state["error"]:
            reason, _, message = state["error"].partition(": ")
            finished[video] = VideoResult(item.uri, "failed", reason, message)
        else:
            order = np.argsort(np.concatenate(state["seconds"]))
            scores = scorer(np.concatenate(state["scores"])[order], np.concatenate(state["levels"])[order])
            cues, _ = scores_to_cues(scores, bundle.labels, bundle.thresholds, caption_text, options.postprocess)
            try:
                vtt_uri = write_outputs(out, item, scores, cues, bundle, digest)
                sdh_uri = write_sdh(out, item, cues, options.merge_with_speech) if options.merge_with_speech else None
            except storage.StorageError as exc:
                finished[video] = VideoResult(item.uri, "failed", "write_error", str(exc))
            except Exception as exc:  # noqa: BLE001 - e.g. an unparsable speech file fails this video alone
                finished[video] = VideoResult(item.uri, "failed", "speech_track", f"{type(exc).__name__}: {exc}")
            else:
                finished[video] = VideoResult(
                    item.uri, "captioned", "", "", vtt_uri, float(len(scores)), len(cues), top_labels(cues), sdh_uri or ""
                )
        if progress is not None:
            progress(finished[video])

    for batch in ds.iter_batches(batch_format="numpy", batch_size=None, prefetch_batches=1):
        for video in np.unique(batch["video"]):
            video = int(video)
            rows = batch["video"] == video
            kinds = batch["kind"][rows]
            state = pending[video]
            is_window = kinds == "window"
            if is_window.any():
                state["seconds"].append(batch["second"][rows][is_window])
                state["scores"].append(batch[output][rows][is_window])
                state["levels"].append(batch["level_dbfs"][rows][is_window])
            for kind, n, message in zip(kinds[~is_window], batch["n_seconds"][rows][~is_window], batch["message"][rows][~is_window], strict=True):
                if kind == "error":
                    state["error"] = str(message)
                else:
                    state["n"] = int(n)
            received = sum(len(s) for s in state["seconds"])
            if state["error"] or (state["n"] is not None and received == state["n"]):
                finish(video)
    for video in list(pending):  # stream ended early for these (should not happen)
        pending[video]["error"] = pending[video]["error"] or "other: the pipeline lost part of this video's rows"
        finish(video)
    return [finished[i] for i in sorted(finished)]


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


__all__ = ["CaptionOptions", "CaptionRun", "InputFailure", "VideoResult", "caption_library"]
