"""Model registry: architecture name + hyper-parameters → ``torch.nn.Module``.

Every model maps a batch of spectrogram images (N, C, H, W) float32 to label LOGITS
(N, num_classes). The task is multi-label: apply ``torch.sigmoid`` outside the model.
A model with audio context (``mobilenet``, or ``compact`` with ``context`` > 0; both subclass
``models.context_head.ContextTagger``) takes its neighbouring
seconds' images side by side along W, (N, C, H, (2·context + 1)·W); ``sound_captions.context``
builds that input, and ``input_shape`` is still the shape of ONE second.

Note the axis order: ``FeatureConfig.shape`` is (H, W, C) as stored in the shards, while
``input_shape`` here is (C, H, W) as PyTorch convolutions take it; permute the batch
(N, H, W, C) → (N, C, H, W) before the forward pass.

The registry is an explicit dict (no ``eval`` of names). A model bundle stores ``name`` and the
full hyper-parameter dict (``default_hparams(name)`` merged with the overrides), so
``build_model(name, num_classes, input_shape, **hparams)`` rebuilds the same module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from torch import nn

from sound_captions.models import baseline, compact, mobilenet, panns, torchvision_models
from sound_captions.models.torchvision_models import PretrainedWeightsError


class UnknownModelError(ValueError):
    """The architecture name is not in the registry."""


class InvalidHparamsError(ValueError):
    """A hyper-parameter is not known to the architecture, or a shape argument is invalid."""


@dataclass(frozen=True)
class _Entry:
    build: Callable[..., nn.Module]  # (num_classes, input_shape, **hparams) -> module
    defaults: dict[str, object]


_REGISTRY: dict[str, _Entry] = {
    "baseline": _Entry(baseline.BaselineCNN, baseline.DEFAULT_HPARAMS),
    "compact": _Entry(compact.CompactCNN, compact.DEFAULT_HPARAMS),
    "mobilenet": _Entry(mobilenet.MobileNetContext, mobilenet.DEFAULT_HPARAMS),
    "panns_cnn14": _Entry(panns.Cnn14, panns.DEFAULT_HPARAMS),
    **{
        name: _Entry(
            partial(torchvision_models.build_torchvision, name),
            torchvision_models.DEFAULT_HPARAMS,
        )
        for name in torchvision_models.ADAPTERS
    },
}

MODEL_NAMES: tuple[str, ...] = tuple(_REGISTRY)

__all__ = [
    "MODEL_NAMES",
    "InvalidHparamsError",
    "PretrainedWeightsError",
    "UnknownModelError",
    "build_model",
    "context_seconds",
    "count_parameters",
    "default_hparams",
]


def _entry(name: str) -> _Entry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownModelError(
            f"unknown model {name!r}; known models: {', '.join(MODEL_NAMES)}"
        ) from None


def default_hparams(name: str) -> dict[str, object]:
    """The hyper-parameters ``build_model(name, ...)`` uses when given none (a fresh copy)."""
    return dict(_entry(name).defaults)


def context_seconds(name: str, hparams: dict) -> int:
    """Seconds of audio context on each side that architecture ``name`` with ``hparams`` uses
    (0 for architectures that judge each second alone)."""
    entry = _entry(name)
    if "context" not in entry.defaults:
        return 0
    return int(hparams.get("context", entry.defaults["context"]) or 0)


def build_model(
    name: str,
    num_classes: int,
    input_shape: tuple[int, int, int] = (1, 128, 128),
    **hparams: object,
) -> nn.Module:
    """Build architecture ``name`` for ``num_classes`` labels.

    Args:
        name: one of ``MODEL_NAMES``.
        num_classes: number of output logits (labels), at least 1.
        input_shape: (C, H, W) of one example, e.g. (1, 128, 128) or (3, 256, 256).
        **hparams: overrides of ``default_hparams(name)``.

    Returns:
        A module mapping (N, C, H, W) float32 → (N, num_classes) logits, in training mode.

    Raises:
        UnknownModelError: ``name`` is not registered.
        InvalidHparamsError: an unknown hyper-parameter, or a bad ``num_classes``/``input_shape``.
        PretrainedWeightsError: torchvision models given an unusable ``pretrained`` file.
    """
    entry = _entry(name)
    unknown = sorted(set(hparams) - set(entry.defaults))
    if unknown:
        raise InvalidHparamsError(
            f"model {name!r} has no hyper-parameter(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(entry.defaults))}"
        )
    if int(num_classes) < 1:
        raise InvalidHparamsError(f"num_classes must be at least 1, got {num_classes}")
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise InvalidHparamsError(f"input_shape must be (C, H, W) positive ints, got {input_shape}")
    merged = {**entry.defaults, **hparams}
    return entry.build(int(num_classes), shape, **merged)


def count_parameters(model: nn.Module, include_buffers_like_keras: bool = False) -> int:
    """Number of trainable parameters of ``model``.

    With ``include_buffers_like_keras=True``, add what a Keras summary lists as non-trainable:
    the BatchNorm moving mean and variance (``running_mean``/``running_var``; the
    ``num_batches_tracked`` counter has no Keras counterpart and is not counted).
    """
    total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if include_buffers_like_keras:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._NormBase):
                for buffer in (module.running_mean, module.running_var):
                    if buffer is not None:
                        total += buffer.numel()
    return total
