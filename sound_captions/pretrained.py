"""Pretrained AudioSet taggers as model bundles: a PANNs checkpoint → ``model.bundle``.

PANNs (Kong et al. 2020) publishes Cnn14 checkpoints trained on all of AudioSet (e.g.
``Cnn14_16k_mAP=0.438.pth``, 16 kHz; ``Cnn14_mAP=0.431.pth``, 32 kHz). ``import_panns`` reads one
that the user downloaded (nothing is fetched here), checks it key for key and shape for shape
against the registry's ``panns_cnn14``, and checks its front-end (the mel filter bank it carries)
against the bundle's feature config ``FeatureConfig.panns(rate)``, so that a caption run computes
exactly the log-mel images the model was trained on.

Per-second scores: each second is scored clip-wise from that second's 101 frames alone (Cnn14's
max+mean pooling over time, then its classifier). That keeps the project's per-second contract
(second *k* is samples [k·sr, (k+1)·sr), scored from its own window, like every trained bundle),
makes the scores reproducible against the reference code second by second, and costs one forward
pass per second. PANNs was trained on 10-s clips; one-second inputs score short events well and
long textures (music genres, ambience) less confidently than a 10-s clip would.
"""

from __future__ import annotations

import hashlib
import io
import pickle

import numpy as np
import torch

from sound_captions import storage
from sound_captions.bundle import ModelBundle
from sound_captions.features import (
    PANNS_FRONT_ENDS,
    FeatureConfig,
    panns_stft_kernels,
    slaney_mel_filters,
)
from sound_captions.ontology import Ontology

ARCHITECTURE = "panns_cnn14"
DEFAULT_THRESHOLD = 0.3
# The front-end layers of a PANNs checkpoint (torchlibrosa's STFT as convolutions, the mel
# filters): here they are the feature config, so they are checked and then left out.
FRONT_END_KEYS = (
    "spectrogram_extractor.stft.conv_real.weight",
    "spectrogram_extractor.stft.conv_imag.weight",
    "logmel_extractor.melW",
)
# What a PANNs training checkpoint may hold beside tensors (its sampler's numpy state): only
# array and dtype reconstruction, never a callable that could do anything else.
_NUMPY_GLOBALS = (
    "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
    "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar", "numpy.ndarray", "numpy.dtype",
)


class CheckpointError(ValueError):
    """A file is not a usable checkpoint of the architecture asked for."""


def _allowed_numpy_globals(names: list[str]) -> list:
    import importlib

    allowed = []
    for name in names:
        module, _, attr = name.rpartition(".")
        if name in _NUMPY_GLOBALS or (module == "numpy.dtypes" and attr.endswith("DType")):
            try:
                allowed.append(getattr(importlib.import_module(module), attr))
            except (ImportError, AttributeError):
                continue
    return allowed


def _numpy_dtype_classes() -> list:
    """numpy's dtype classes (``numpy.dtypes.Int64DType``, ...): what an array's dtype unpickles
    as, and which the checkpoint scan does not list."""
    import numpy.dtypes

    return [getattr(numpy.dtypes, name) for name in dir(numpy.dtypes) if name.endswith("DType")]


def read_checkpoint(uri: str, raw: bytes | None = None) -> dict[str, torch.Tensor]:
    """The ``state_dict`` in a PyTorch checkpoint file (a bare state dict or ``{"model": ...}``),
    read without running pickled code (numpy array state is allowed, nothing else). ``raw``:
    the file's bytes when the caller has read them already."""
    raw = storage.read_bytes(uri) if raw is None else raw

    def load(extra_globals: list | None = None):
        with torch.serialization.safe_globals(extra_globals or []):
            return torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)

    try:
        try:
            data = load()
        except pickle.UnpicklingError:
            names = torch.serialization.get_unsafe_globals_in_checkpoint(io.BytesIO(raw))
            allowed = _allowed_numpy_globals(names)
            if len(allowed) < len(names):
                refused = sorted(set(names) - {f"{g.__module__}.{g.__qualname__}" for g in allowed})
                raise CheckpointError(
                    f"{uri}: the checkpoint holds Python objects other than tensors and arrays "
                    f"({', '.join(refused[:3])}); refusing to run its code"
                ) from None
            data = load(allowed + _numpy_dtype_classes())
    except CheckpointError:
        raise
    except Exception as exc:
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
        raise CheckpointError(f"{uri}: not a readable PyTorch checkpoint ({type(exc).__name__}: {first[:160]})") from exc
    state = data.get("model", data) if isinstance(data, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{uri}: holds no state dict of tensors (neither a state dict nor {{'model': state_dict}})")
    if all(k.startswith("module.") for k in state):  # saved from a DataParallel wrapper
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def panns_feature_config(state: dict[str, torch.Tensor], uri: str) -> FeatureConfig:
    """The feature config a PANNs checkpoint's own front-end computes, checked filter by filter."""
    mel = state.get("logmel_extractor.melW")
    if mel is None or mel.ndim != 2:
        raise CheckpointError(f"{uri}: no logmel_extractor.melW, so not a PANNs checkpoint with its front-end")
    n_fft = 2 * (mel.shape[0] - 1)
    rates = [rate for rate, (size, *_rest) in PANNS_FRONT_ENDS.items() if size == n_fft]
    if not rates:
        raise CheckpointError(f"{uri}: a {n_fft}-point front-end matches none of PANNs' published ones (8, 16, 32 kHz)")
    cfg = FeatureConfig.panns(rates[0], mel_bins=int(mel.shape[1]))
    f_min, f_max = cfg.mel_range_hz
    ours = slaney_mel_filters(cfg.sample_rate_hz, n_fft, cfg.height, f_min, f_max)
    error = float((ours - mel.float()).abs().max() / mel.float().abs().max().clamp(min=1e-12))
    if error > 1e-3:
        raise CheckpointError(
            f"{uri}: its mel filters differ from PANNs' {cfg.sample_rate_hz} Hz front-end "
            f"({f_min:g}–{f_max:g} Hz, {cfg.height} bins; relative error {error:.2g})"
        )
    for key, kernel in zip(FRONT_END_KEYS[:2], panns_stft_kernels(n_fft), strict=True):
        weight = state.get(key)
        if weight is None or tuple(weight.shape) != tuple(kernel.shape):
            raise CheckpointError(f"{uri}: {key} is missing or not a {n_fft}-point STFT")
        if float((weight.float() - kernel).abs().max()) > 1e-4:
            raise CheckpointError(f"{uri}: {key} is not PANNs' Hann-windowed {n_fft}-point STFT")
    return cfg


def _check_keys(model: torch.nn.Module, state: dict[str, torch.Tensor], uri: str) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing ({', '.join(missing[:3])}{', …' if len(missing) > 3 else ''})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected ({', '.join(unexpected[:3])}{', …' if len(unexpected) > 3 else ''})")
        raise CheckpointError(f"{uri}: not a Cnn14 checkpoint: keys {'; '.join(parts)}")
    wrong = [
        f"{k} {tuple(state[k].shape)} (Cnn14: {tuple(v.shape)})"
        for k, v in expected.items() if tuple(state[k].shape) != tuple(v.shape)
    ]
    if wrong:
        raise CheckpointError(f"{uri}: not a Cnn14 checkpoint: shapes differ: {'; '.join(wrong[:3])}")
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{uri}: non-finite weights in {', '.join(bad[:3])}")


def import_panns(
    checkpoint_uri: str,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    vocabulary_uri: str | None = None,
    gate_dbfs: float | None = None,
) -> ModelBundle:
    """A model bundle from a PANNs Cnn14 checkpoint (527 AudioSet classes, 8/16/32 kHz).

    Args:
        checkpoint_uri: the ``.pth`` file (local or s3://), as PANNs publishes it.
        threshold: the probability threshold of every class (tune it on labelled data with
            ``tune_bundle_thresholds``).
        vocabulary_uri: a caption vocabulary CSV instead of the packaged one.
        gate_dbfs: the bundle's energy gate (seconds quieter than this are never captioned).

    Raises:
        CheckpointError: unreadable file, another architecture, a truncated or mismatched
            state dict, an unknown front-end, or not 527 outputs.
    """
    from sound_captions.caption.vocabulary import CaptionVocabulary
    from sound_captions.models import InvalidHparamsError, build_model, default_hparams

    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    raw = storage.read_bytes(checkpoint_uri)  # once: a checkpoint is ~300 MB
    raw_digest = hashlib.sha256(raw).hexdigest()
    state = read_checkpoint(checkpoint_uri, raw)
    del raw
    cfg = panns_feature_config(state, checkpoint_uri)
    weights = {k: v for k, v in state.items() if k not in FRONT_END_KEYS}
    ontology = Ontology.load()
    labels = list(ontology.labelled_mids)  # PANNs' output order is class_labels_indices.csv's
    head = weights.get("fc_audioset.weight")
    if head is not None and head.shape[0] != len(labels):
        raise CheckpointError(f"{checkpoint_uri}: {head.shape[0]} outputs, not the {len(labels)} AudioSet classes in PANNs' order")
    hparams = default_hparams(ARCHITECTURE)
    c, h, w = 1, cfg.height, cfg.width
    try:
        model = build_model(ARCHITECTURE, len(labels), (c, h, w), **hparams)
    except InvalidHparamsError as exc:  # e.g. fewer mel bins than Cnn14's poolings need
        raise CheckpointError(f"{checkpoint_uri}: {exc}") from None
    _check_keys(model, weights, checkpoint_uri)
    model.load_state_dict(weights, strict=True)
    model.eval()
    names = {mid: ontology.name(mid) for mid in labels}
    captions = CaptionVocabulary.load(vocabulary_uri).resolve(labels, names)
    return ModelBundle(
        architecture=ARCHITECTURE,
        hparams=hparams,
        state_dict=model.state_dict(),
        labels=labels,
        label_names=names,
        caption_text=captions.texts,
        thresholds={mid: float(threshold) for mid in labels},
        feature_config=cfg,
        metrics={},
        training={
            "source": "panns",
            "checkpoint": checkpoint_uri,
            "checkpoint_sha256": raw_digest,
            "per_second": "clip-wise over each 1-s window",
            "threshold": float(threshold),
            "captions_derived": captions.derived,
            "captions_never": captions.never,
        },
        gate_dbfs=gate_dbfs,
    )


def tune_bundle_thresholds(
    bundle: ModelBundle,
    data_uri: str,
    *,
    split: str | None = "valid",
    target_precision: float = 0.9,
    min_positives: int = 5,
) -> tuple[ModelBundle, dict]:
    """Thresholds of the bundle's labels that a labelled dataset annotates, tuned on its
    ``split`` the way ``train`` tunes them (per label to ``target_precision``; labels with fewer
    than ``min_positives`` positives get the pooled threshold). Other labels keep theirs.

    Returns the new bundle and a summary (labels tuned, positives, old and new thresholds).
    """
    from dataclasses import replace

    from sound_captions.dataset import shards
    from sound_captions.evaluate import score_dataset
    from sound_captions.metrics import tune_thresholds_pooled

    info = shards.load_dataset_info(data_uri)
    y_true, scores, _ = score_dataset(bundle, data_uri, split=split)
    annotated = [j for j, mid in enumerate(bundle.labels) if mid in set(info.labels)]
    if not annotated:
        raise CheckpointError(f"{data_uri}: annotates none of the bundle's labels")
    mids = [bundle.labels[j] for j in annotated]
    tuning = tune_thresholds_pooled(
        y_true[:, annotated], scores[:, annotated], mids,
        target_precision=target_precision, default=float(np.median(list(bundle.thresholds.values()))),
        min_positives=min_positives,
    )
    thresholds = {**bundle.thresholds, **tuning.thresholds}
    summary = {
        "dataset": data_uri,
        "split": split,
        "windows": int(len(y_true)),
        "target_precision": target_precision,
        "tuned": {
            mid: {"before": bundle.thresholds[mid], "after": tuning.thresholds[mid], "positives": tuning.positives[mid]}
            for mid in mids
        },
        "pooled": tuning.pooled,
        "fallback": list(tuning.fallback),
    }
    training = {**bundle.training, "threshold_tuning": summary}
    return replace(bundle, thresholds=thresholds, training=training, created=bundle.created), summary
