"""Audio context around each second: per-second rows → the neighbours a context model sees.

A model with ``context = c`` (see ``models/mobilenet.py``) judges second k from seconds
k-c … k+c of the same medium. This module is the one place that decides who a second's
neighbours are, for every consumer:

- training and ``evaluate`` (shard rows): a row's neighbours are the rows of the same clip and
  the same ``augment`` version whose ``start_s`` is exactly ``start_s ± j`` seconds
  (``neighbour_index``); ``stack_context`` puts their spectrograms side by side;
- the caption run (one medium, seconds 0 … T-1): ``sequence_index`` for T seconds.

A neighbour that does not exist (before the start, after the end, a second missing from the
shards) is the spectrogram of digital silence (``silence_spectrogram``), in training and in
captioning alike, so a model never sees one thing at training time and another at run time.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from sound_captions.features import FeatureConfig, spectrogram

MISSING = -1


def model_context(model: torch.nn.Module) -> int:
    """Seconds of context on each side that ``model`` uses (0: it judges each second alone)."""
    return int(getattr(model, "context", 0) or 0)


def silence_spectrogram(cfg: FeatureConfig) -> np.ndarray:
    """(H, W, C) float32: the features of one second of digital silence under ``cfg``."""
    return spectrogram(np.zeros((1, cfg.window_samples), dtype=np.float32), cfg).numpy()[0]


def neighbour_index(clip_ids: Sequence, augments: Sequence | None, start_s: Sequence[float], context: int) -> np.ndarray:
    """Row indices of each row's neighbours: (n, 2·context + 1) int64, ``MISSING`` where none.

    Column ``context + j`` holds the row of the same clip (and ``augment`` version) that starts
    ``j`` seconds later (j = -context … context); column ``context`` is the row itself.
    """
    n = len(clip_ids)
    k = 2 * int(context) + 1
    augments = augments if augments is not None else [""] * n
    keys = {}
    start_ms = np.rint(np.asarray(start_s, dtype=np.float64) * 1000).astype(np.int64)
    for i in range(n):
        keys.setdefault((str(clip_ids[i]), str(augments[i]), int(start_ms[i])), i)
    out = np.full((n, k), MISSING, dtype=np.int64)
    for i in range(n):
        clip, aug, ms = str(clip_ids[i]), str(augments[i]), int(start_ms[i])
        for col, j in enumerate(range(-context, context + 1)):
            out[i, col] = i if j == 0 else keys.get((clip, aug, ms + 1000 * j), MISSING)
    return out


def sequence_index(n_seconds: int, context: int) -> np.ndarray:
    """Neighbours of seconds 0 … n-1 of one medium: (n, 2·context + 1) int64, ``MISSING`` outside."""
    k = np.arange(n_seconds)[:, None] + np.arange(-context, context + 1)[None, :]
    return np.where((k >= 0) & (k < n_seconds), k, MISSING).astype(np.int64)


def stack_context(spec: np.ndarray, index: np.ndarray, silence: np.ndarray) -> np.ndarray:
    """(n, H, W, C) spectrograms + (m, K) neighbour index → (m, H, K·W, C), neighbours side by
    side along time (missing ones are ``silence``), in the dtype of ``spec``."""
    spec = np.asarray(spec)
    padded = np.concatenate([spec, np.asarray(silence, dtype=spec.dtype)[None]], axis=0)
    picked = padded[np.where(index == MISSING, len(spec), index)]  # (m, K, H, W, C)
    m, k, h, w, c = picked.shape
    return np.ascontiguousarray(picked.transpose(0, 2, 1, 3, 4).reshape(m, h, k * w, c))


def per_second_outputs(model: torch.nn.Module, x: torch.Tensor, context: int) -> torch.Tensor:
    """Model inputs (n, C, M, W) → what each second gives alone: a one-second model's
    probabilities (n, L), or a context model's embeddings (n, D), which ``score_embeddings``
    turns into probabilities once every neighbour is known (the caller picks the grad mode)."""
    return model.embed(x) if context else torch.sigmoid(model(x).float())


def classify_embeddings(model: torch.nn.Module, embeddings: torch.Tensor, index: np.ndarray, silence_embedding: torch.Tensor) -> torch.Tensor:
    """Per-second embeddings (n, D) + neighbour index (m, K) → logits (m, L) of a context model."""
    padded = torch.cat([embeddings, silence_embedding.reshape(1, -1).to(embeddings)], dim=0)
    rows = torch.as_tensor(np.where(index == MISSING, len(embeddings), index), device=embeddings.device)
    return model.classify(padded[rows])


def silence_embedding(model: torch.nn.Module, cfg: FeatureConfig, device: torch.device | str = "cpu") -> torch.Tensor:
    """(D,) the embedding of one second of digital silence: what a missing neighbour is."""
    from sound_captions.features import to_model_input

    with torch.inference_mode():
        return model.embed(to_model_input(silence_spectrogram(cfg)[None]).to(device))[0]


def score_embeddings(model: torch.nn.Module, embeddings: torch.Tensor, index: np.ndarray, silence: torch.Tensor, batch_size: int = 4096) -> np.ndarray:
    """Per-second embeddings (n, D) + neighbour index (m, K) → probabilities (m, L) float32,
    ``batch_size`` rows of the head at a time."""
    with torch.inference_mode():
        parts = [
            torch.sigmoid(classify_embeddings(model, embeddings, index[i : i + batch_size], silence).float()).cpu().numpy()
            for i in range(0, len(index), batch_size)
        ]
    n_labels = model.head[-1].out_features
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, n_labels), dtype=np.float32)


def context_width(cfg: FeatureConfig, context: int) -> int:
    """Time frames of a context model's input: (2·context + 1) windows of ``cfg.width``."""
    return (2 * int(context) + 1) * cfg.width
