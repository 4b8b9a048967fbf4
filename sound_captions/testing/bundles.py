"""A small model bundle trained in seconds on generated media (for tests and benchmarks).

    make_media (beep / music / noise / silence / mixtures) ─► compute_features ─► compact CNN
    (plain torch, a few epochs) ─► ModelBundle (thresholds 0.5, packaged caption texts)

It separates the three synthetic kinds of ``testing/media.py`` well enough that captions of a
generated library agree with its per-second truth; it knows nothing about real sounds.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from sound_captions.audio import decode_audio
from sound_captions.bundle import ModelBundle, save_bundle
from sound_captions.caption.vocabulary import CaptionVocabulary
from sound_captions.features import FeatureConfig, compute_features, to_model_input
from sound_captions.models import build_model, context_seconds, default_hparams
from sound_captions.ontology import Ontology
from sound_captions.testing.media import KIND_LABELS, make_media, per_second_truth

LABELS: tuple[str, ...] = tuple(KIND_LABELS.values())
_TRAIN_KINDS = ("beep", "music", "noise", "silence", "beep+music", "music+noise")
TINY_HPARAMS = {"filters": (8, 16, 32, 32), "conv_dropout": 0.0, "head_units": 32, "head_dropout": 0.0}


def training_windows(seed: int = 0, clips_per_kind: int = 3, clip_s: int = 4, cfg: FeatureConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Spectrograms (N, H, W, C) float32 and multi-hot targets (N, len(LABELS)) of generated
    clips: ``clips_per_kind`` clips of each kind and mixture, plus sequences of kinds so that the
    seconds at a transition (codec delay smears a sound into the next second) are seen too."""
    cfg = cfg or FeatureConfig()
    plans: list[list[tuple[str, int]]] = [[(kind, clip_s)] for kind in _TRAIN_KINDS for _ in range(clips_per_kind)]
    plans += [
        [("noise", 3), ("silence", 2), ("beep", 3), ("silence", 2), ("music", 3), ("silence", 2)],
        [("beep", 3), ("music", 3), ("noise", 3), ("beep", 3), ("silence", 2), ("music", 3), ("noise", 2)],
    ]
    xs, ys = [], []
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory(prefix="sc-tiny-") as tmp:
        for index, segments in enumerate(plans):
            path = make_media(Path(tmp) / f"clip-{index}.wav", segments, seed=int(rng.integers(0, 2**31 - 1)))
            feats = compute_features(decode_audio(path, sample_rate_hz=cfg.sample_rate_hz), cfg)
            truth = per_second_truth(segments)[: len(feats)]
            xs.append(feats[: len(truth)])
            ys.append(np.array([[m in present for m in LABELS] for present in truth], dtype=np.float32))
    return np.concatenate(xs), np.concatenate(ys)


def train_tiny_bundle(
    path: str | os.PathLike, seed: int = 0, *, epochs: int = 20, cfg: FeatureConfig | None = None,
    architecture: str = "compact", hparams: dict | None = None,
) -> ModelBundle:
    """Train a model on generated clips and save a bundle at ``path``: by default the ``compact``
    CNN with narrow filters (a few seconds on one CPU core). Another ``architecture`` (e.g. the
    one ``train`` uses by default, for a throughput benchmark) trains the same way; a context
    model sees each window with silent neighbours. Deterministic for a ``seed`` (torch's global
    RNG is saved and restored).
    """
    from sound_captions.context import MISSING, silence_spectrogram, stack_context

    cfg = cfg or FeatureConfig()
    x, y = training_windows(seed, cfg=cfg)
    if hparams is None:
        hparams = TINY_HPARAMS if architecture == "compact" else {}
    hparams = {**default_hparams(architecture), **hparams}
    context = context_seconds(architecture, hparams)
    if context:
        index = np.full((len(x), 2 * context + 1), MISSING, dtype=np.int64)
        index[:, context] = np.arange(len(x))
        x = stack_context(x, index, silence_spectrogram(cfg))
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = build_model(architecture, len(LABELS), (cfg.channels, cfg.height, cfg.width), **hparams)
        optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        inputs, targets = to_model_input(x), torch.as_tensor(y)
        generator = torch.Generator().manual_seed(seed)
        model.train()
        for _ in range(epochs):
            order = torch.randperm(len(inputs), generator=generator)
            for start in range(0, len(order), 32):
                index = order[start : start + 32]
                if len(index) < 2:  # batch norm needs two examples
                    continue
                optimiser.zero_grad()
                loss_fn(model(inputs[index]), targets[index]).backward()
                optimiser.step()
        model.eval()
        with torch.inference_mode():
            probs = torch.sigmoid(model(inputs)).numpy()
    finally:
        torch.random.set_rng_state(state)
    accuracy = float(((probs >= 0.5) == (y >= 0.5)).mean())
    vocabulary = CaptionVocabulary.load()
    ontology = Ontology.load()
    bundle = ModelBundle(
        architecture=architecture,
        hparams={k: list(v) if isinstance(v, tuple) else v for k, v in hparams.items()},
        state_dict={k: v.detach().clone() for k, v in model.state_dict().items()},
        labels=list(LABELS),
        label_names={m: ontology.name(m) for m in LABELS},
        caption_text={m: vocabulary.caption(m) for m in LABELS if vocabulary.caption(m)},
        thresholds=dict.fromkeys(LABELS, 0.5),
        feature_config=cfg,
        dataset_digest="generated",
        metrics={"train_accuracy": accuracy},
        training={"seed": seed, "epochs": epochs, "kinds": list(_TRAIN_KINDS)},
    )
    save_bundle(bundle, os.fspath(path))
    return bundle
