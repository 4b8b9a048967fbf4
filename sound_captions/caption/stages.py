"""The caption run's stages: what runs on Ray workers, and the driver's per-video scorer.

    decode_chunks (CPU) ─► add_features (CPU) ─► Classifier (actor pool, GPU/CPU) ─► SecondScorer (driver)

Rows between stages are one second each (``kind == "window"``), plus one ``"end"`` row per
video carrying its length and one ``"error"`` row for a video that failed (``"reason: message"``),
so memory is bounded by Ray's streaming executor rather than by the length of a video.
"""

from __future__ import annotations

import re

import numpy as np

from sound_captions import reasons, storage
from sound_captions.audio import DecodeError, stream_audio
from sound_captions.bundle import ModelBundle, load_bundle
from sound_captions.caption.fetch import FetchError, FetchOptions, fetched
from sound_captions.context import (
    per_second_outputs,
    score_embeddings,
    sequence_index,
    silence_embedding,
)
from sound_captions.features import (
    FeatureConfig,
    frame_windows,
    pin_torch_threads,
    spectrograms_where,
    to_model_input,
)


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
        if storage.is_s3(uri) and (reason == reasons.NOT_FOUND or re.search(r"\b40[134]\b|Forbidden|Access Denied", str(exc))):
            reason = reasons.UNREADABLE  # a missing object or one we may not read
        elif reason == reasons.NOT_FOUND:
            reason = reasons.UNAVAILABLE
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

    def __init__(self, model: str, threads: int = 1, cpu_forward_batch: int = 8):
        import torch

        from sound_captions.models.fuse import fused_for_inference

        self.bundle = load_bundle(model)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device.type == "cpu":
            pin_torch_threads(threads)
        # convolutions on channels-last (NHWC) tensors, the same numbers (to ~1e-7): 1.7× the
        # windows/s of the baseline on 3-channel features (128x128x3, 256x256x3) on CPU; 1.0× on
        # one-channel features, whose tensors have the same memory layout either way
        # BatchNorm folded and ReLU after pooling (models.fuse): the same numbers, 1.38× the
        # baseline's windows/s on 2 CPU threads
        self.model = fused_for_inference(self.bundle.build_model()).to(self.device).to(memory_format=torch.channels_last)
        # on CPU, passes of a few windows: one pass of 256 makes the first block's activations
        # 0.5 GB, which every layer then streams through memory; passes of 8 stay in the caches
        # (1.6-1.8x the baseline's windows/s on 2 threads, 2.3x the compact model's; per-window
        # results, so the same scores). A GPU takes the whole batch at once.
        self.forward_batch = max(1, int(cpu_forward_batch)) if self.device.type == "cpu" else None
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
                x = to_model_input(spec[is_window]).to(self.device).contiguous(memory_format=torch.channels_last)
                with torch.autocast(device_type=self.device.type, enabled=self.device.type == "cuda"):
                    parts = torch.split(x, self.forward_batch) if self.forward_batch else (x,)
                    y = torch.cat([per_second_outputs(self.model, part, self.context).float() for part in parts])
                out[is_window] = y.cpu().numpy()
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
