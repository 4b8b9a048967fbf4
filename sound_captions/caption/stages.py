"""The caption run's stages after decoding: what runs on Ray workers, and the driver's scorer.

    decode_chunks (CPU tasks, ``caption.decode``) ─► Classifier (actor pool: spectrograms and model)
                                                 ─► SecondScorer (driver)
    with a GPU actor:  decode_chunks ─► add_features (CPU tasks) ─► Classifier (GPU) ─► SecondScorer

Rows between stages are one second each (``kind == "window"``), plus one ``"end"`` row per
video carrying its length and one ``"error"`` row for a video that failed (``"reason: message"``),
so memory is bounded by Ray's streaming executor rather than by the length of a video.
"""

from __future__ import annotations

import numpy as np

from sound_captions.bundle import ModelBundle, load_bundle
from sound_captions.context import (
    per_second_outputs,
    score_embeddings,
    sequence_index,
    silence_embedding,
)
from sound_captions.features import (
    FeatureConfig,
    pin_torch_threads,
    spectrograms_where,
    to_model_input,
)


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
    """Ray Data actor: spectrogram rows (or, with ``features``, window rows, whose spectrograms
    it computes first, as ``add_features`` would) → per-label probabilities, or, for a model with
    audio context, per-second embeddings that the driver's ``SecondScorer`` turns into
    probabilities once a video's neighbouring seconds are all known (the model loads once)."""

    def __init__(self, model: str, threads: int = 1, cpu_forward_batch: int = 8, features: bool = False):
        import torch

        from sound_captions.models.fuse import fused_for_inference

        self.bundle = load_bundle(model)
        self.threads = threads
        self.features = self.bundle.feature_config.to_dict() if features else None
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

        if self.features is not None:
            batch = add_features(batch, self.features, self.threads)
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
