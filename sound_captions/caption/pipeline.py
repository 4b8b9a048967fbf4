"""Video library → per-video WebVTT + per-second scores + one run report (Ray Data).

    discover ─► skip done ─► decode in chunks (CPU) ─► log-mel (CPU) ─► CNN (actor pool, GPU/CPU)
             ─► (driver) gather per video ─► smooth ─► cues ─► .scores.parquet, then .vtt

The stages are in ``stages.py``, a video's outputs and the rerun rule in ``outputs.py``, the
report in ``report.py``; this module wires them. The driver only keeps the small per-second
score vectors of videos in flight. One video's failure (decode, post-processing, its speech
track, a write) is that video's row in the report; the others go on.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import asdict

import numpy as np

from sound_captions import reasons, storage
from sound_captions.bundle import load_bundle
from sound_captions.caption.decode import decode_chunks
from sound_captions.caption.inputs import InputFailure, MediaItem, discover
from sound_captions.caption.options import CaptionOptions
from sound_captions.caption.outputs import (
    SpeechTrackError,
    is_done,
    output_uris,
    settings_digest,
    top_labels,
    write_outputs,
    write_sdh,
)
from sound_captions.caption.postprocess import scores_to_cues
from sound_captions.caption.report import (
    REPORT_DIR,
    CaptionRun,
    VideoResult,
    summary_text,
    write_report,
)
from sound_captions.caption.stages import Classifier, SecondScorer, add_features
from sound_captions.caption.vocabulary import run_caption_texts

log = logging.getLogger(__name__)



# ---------------------------------------------------------------- the run


def inference_cpus(options: CaptionOptions, nodes: list[dict]) -> float:
    """CPUs (and torch threads) of one inference actor: the model is ~3/4 of the job's work,
    so unless the user set ``cpus_per_actor`` it gets what the cluster has beside one decode
    and one spectrogram task, within one node (an actor lives on one) and at most 8; on a GPU
    one CPU feeds it. ``nodes`` is ``ray.nodes()``."""
    if options.cpus_per_actor is not None:
        return float(options.cpus_per_actor)
    if options.gpus_per_actor:
        return 1.0
    cpus = [float(n.get("Resources", {}).get("CPU", 0)) for n in nodes if n.get("Alive", True)]
    spare = sum(cpus) - options.decode_cpus - options.feature_cpus
    return float(max(1, min(8, int(spare), int(max(cpus, default=1)))))


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
    settings = settings_digest(digest, caption_text, options.postprocess)
    items, input_failures = discover(inputs)
    results: list[VideoResult] = [VideoResult(f.input, f.status, f.reason, f.message) for f in input_failures]
    todo: list[MediaItem] = []
    for item in items:
        if item.size_bytes == 0:
            results.append(VideoResult(item.uri, "failed", reasons.EMPTY, "zero-length file"))
        elif not options.force and is_done(out, item, settings, options.merge_with_speech):
            results.append(VideoResult(item.uri, "skipped", reasons.UP_TO_DATE, "outputs exist for these settings and this input version", output_uris(out, item)[0]))
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
            # buffer of at most 128 MiB; for GPU runs' feature tasks, a batch of windows and
            # spectrograms) and, being different, keep the decode tasks (and those feature
            # tasks) separate operators that Ray sizes on their own instead of fusing them into
            # the inference actors.
            memory=options.decode_memory_mb * 2**20,
        )
        # On CPU the inference actor computes the spectrograms itself, on its own threads: no
        # images through the object store and no third operator, whose worker processes would
        # each import torch at start-up. A GPU actor has one CPU, so CPU tasks compute them.
        features_in_actor = not options.gpus_per_actor
        if not features_in_actor:
            ds = ds.map_batches(
                add_features,
                fn_kwargs={"feature_config": cfg.to_dict(), "threads": max(1, int(options.feature_cpus))},
                batch_size=options.feature_batch_size,
                num_cpus=options.feature_cpus,
                memory=options.feature_memory_mb * 2**20,
            )
        actor_cpus = inference_cpus(options, ray.nodes())
        ds = ds.map_batches(
            Classifier,
            fn_constructor_kwargs={
                "model": options.model, "threads": max(1, int(actor_cpus)), "cpu_forward_batch": options.cpu_forward_batch,
                "features": features_in_actor,
            },
            batch_size=options.inference_batch_size,
            num_cpus=actor_cpus,
            num_gpus=options.gpus_per_actor or None,
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, options.inference_actors)),
        )
        results += _gather(ds, todo, out, bundle, caption_text, (digest, settings), options, progress)
    run = CaptionRun(
        results=results, wall_s=time.perf_counter() - started, report_uri=storage.join(out, REPORT_DIR, "report.parquet"),
        never_captioned=never, derived_captions=captions.derived,
    )
    write_report(out, run)
    return run


def _gather(ds, todo, out, bundle, caption_text, digests, options, progress) -> list[VideoResult]:
    pending: dict[int, dict] = defaultdict(lambda: {"seconds": [], "scores": [], "levels": [], "n": None, "error": None})
    finished: dict[int, VideoResult] = {}
    scorer = SecondScorer(bundle)
    output = "embedding" if bundle.context else "scores"

    def finish(video: int) -> None:
        state = pending.pop(video)
        item = todo[video]
        finished[video] = _failed(item, state["error"]) if state["error"] else _finish(item, state, scorer, bundle, caption_text, digests, options, out)
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


def _failed(item: MediaItem, error: str) -> VideoResult:
    reason, _, message = error.partition(": ")
    return VideoResult(item.uri, "failed", reason, message)


def _finish(item, state, scorer, bundle, caption_text, digests, options, out) -> VideoResult:
    """One video's gathered rows → scores, cues and outputs; whatever fails, fails this video."""
    try:
        order = np.argsort(np.concatenate(state["seconds"]))
        scores = scorer(np.concatenate(state["scores"])[order], np.concatenate(state["levels"])[order])
        cues, _ = scores_to_cues(scores, bundle.labels, bundle.thresholds, caption_text, options.postprocess)
    except Exception as exc:  # noqa: BLE001 - one video's bad scores must not end the run
        return VideoResult(item.uri, "failed", reasons.POSTPROCESS_ERROR, f"{type(exc).__name__}: {exc}")
    try:
        vtt_uri, vtt = write_outputs(out, item, scores, cues, bundle, *digests)
        sdh = write_sdh(out, item, cues, vtt, options.merge_with_speech) if options.merge_with_speech else None
    except storage.StorageError as exc:
        return VideoResult(item.uri, "failed", reasons.WRITE_ERROR, str(exc))
    except SpeechTrackError as exc:
        return VideoResult(item.uri, "failed", reasons.SPEECH_TRACK, str(exc))
    except Exception as exc:  # noqa: BLE001 - the last resort: this video fails, the run goes on
        return VideoResult(item.uri, "failed", reasons.OTHER, f"writing the outputs: {type(exc).__name__}: {exc}")
    return VideoResult(item.uri, "captioned", "", "", vtt_uri, float(len(scores)), len(cues), top_labels(cues), sdh or "")


__all__ = ["CaptionOptions", "CaptionRun", "InputFailure", "VideoResult", "caption_library", "inference_cpus", "summary_text"]
