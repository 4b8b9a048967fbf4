"""torchvision backbones adapted to spectrograms: (N, C, H, W) → label logits (N, num_classes).

``resnet18``, ``efficientnet_b0`` and ``vgg11`` are built with ``weights=None``; nothing is ever
downloaded. Optional ImageNet-style initialisation comes from a torchvision ``state_dict`` file
that the user provides (local path, ``file://`` or ``s3://`` URI). The file is loaded with
``strict=True`` into the *unmodified* torchvision model (3-channel stem, 1000-class head), then
the model is adapted:

- stem: when the input has C != 3 channels, the first convolution is replaced by one with C
  input channels. With pretrained weights, a 1-channel stem gets the RGB kernels summed over
  the channel axis (a grey image then gives the same activations as the RGB image it came
  from); other channel counts get the RGB kernels cycled and scaled by 3/C. Without pretrained
  weights the new stem is initialised as torchvision initialises it.
- head: the last linear layer is replaced by a fresh one with ``num_classes`` outputs,
  initialised as torchvision initialises that layer.

All three accept 128×128 inputs: ResNet and EfficientNet end in global pooling, VGG in an
``AdaptiveAvgPool2d((7, 7))`` that upsamples the 4×4 map of a 128×128 input.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn

DEFAULT_HPARAMS: dict[str, object] = {"pretrained": None}

_MAX_LISTED_MISMATCHES = 5


class PretrainedWeightsError(ValueError):
    """A pretrained ``state_dict`` file is missing, unreadable, or does not fit the model."""


@dataclass(frozen=True)
class _Adapter:
    """Where the stem convolution and the classification layer live in one architecture."""

    build: Callable[[], nn.Module]
    get_stem: Callable[[nn.Module], nn.Conv2d]
    set_stem: Callable[[nn.Module, nn.Conv2d], None]
    get_head: Callable[[nn.Module], nn.Linear]
    set_head: Callable[[nn.Module, nn.Linear], None]
    init_head: Callable[[nn.Linear], None]


def _init_stem(conv: nn.Conv2d) -> None:
    # torchvision's ResNet, VGG and EfficientNet all initialise convolutions this way.
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def _init_head_default(linear: nn.Linear) -> None:
    linear.reset_parameters()  # ResNet leaves its fc at PyTorch's default initialisation


def _init_head_vgg(linear: nn.Linear) -> None:
    nn.init.normal_(linear.weight, 0.0, 0.01)
    nn.init.zeros_(linear.bias)


def _init_head_efficientnet(linear: nn.Linear) -> None:
    init_range = 1.0 / math.sqrt(linear.out_features)
    nn.init.uniform_(linear.weight, -init_range, init_range)
    nn.init.zeros_(linear.bias)


def _set_attr(name: str) -> Callable[[nn.Module, nn.Module], None]:
    return lambda model, module: setattr(model, name, module)


def _set_index(path: tuple[str | int, ...]) -> Callable[[nn.Module, nn.Module], None]:
    def setter(model: nn.Module, module: nn.Module) -> None:
        parent = model
        for step in path[:-1]:
            parent = parent[step] if isinstance(step, int) else getattr(parent, step)
        parent[path[-1]] = module  # type: ignore[index]

    return setter


ADAPTERS: dict[str, _Adapter] = {
    "resnet18": _Adapter(
        build=lambda: torchvision.models.resnet18(weights=None),
        get_stem=lambda m: m.conv1,
        set_stem=_set_attr("conv1"),
        get_head=lambda m: m.fc,
        set_head=_set_attr("fc"),
        init_head=_init_head_default,
    ),
    "efficientnet_b0": _Adapter(
        build=lambda: torchvision.models.efficientnet_b0(weights=None),
        get_stem=lambda m: m.features[0][0],
        set_stem=_set_index(("features", 0, 0)),
        get_head=lambda m: m.classifier[1],
        set_head=_set_index(("classifier", 1)),
        init_head=_init_head_efficientnet,
    ),
    "vgg11": _Adapter(
        build=lambda: torchvision.models.vgg11(weights=None),
        get_stem=lambda m: m.features[0],
        set_stem=_set_index(("features", 0)),
        get_head=lambda m: m.classifier[6],
        set_head=_set_index(("classifier", 6)),
        init_head=_init_head_vgg,
    ),
}


def read_state_dict(uri: str) -> dict[str, torch.Tensor]:
    """Load a torchvision ``state_dict`` (.pth) from a local path, ``file://`` or ``s3://`` URI.

    Raises:
        PretrainedWeightsError: the file does not exist, cannot be read, or does not hold a
            mapping of parameter names to tensors.
    """
    uri = str(uri)
    if uri.startswith("s3://"):
        from sound_captions import storage  # lazy: only S3 users need the storage layer

        try:
            data = storage.read_bytes(uri)
        except (OSError, ValueError) as exc:
            raise PretrainedWeightsError(f"cannot read pretrained weights {uri}: {exc}") from exc
    else:
        path = Path(uri.removeprefix("file://"))
        if not path.is_file():
            raise PretrainedWeightsError(f"pretrained weights file not found: {path}")
        data = path.read_bytes()
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for a bad file
        raise PretrainedWeightsError(
            f"pretrained weights {uri} are not a readable torch state_dict: {exc}"
        ) from exc
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise PretrainedWeightsError(
            f"pretrained weights {uri} hold a {type(state).__name__}, not a state_dict "
            "(a mapping of parameter names to tensors, as saved by torch.save(model.state_dict()))"
        )
    return dict(state)


def _check_state_dict(
    model: nn.Module, state: Mapping[str, torch.Tensor], name: str, uri: str
) -> None:
    expected = model.state_dict()
    problems = [f"missing {key}" for key in expected if key not in state]
    problems += [f"unexpected {key}" for key in state if key not in expected]
    problems += [
        f"shape of {key}: file {tuple(state[key].shape)} vs model {tuple(value.shape)}"
        for key, value in expected.items()
        if key in state and state[key].shape != value.shape
    ]
    if problems:
        listed = "; ".join(problems[:_MAX_LISTED_MISMATCHES])
        more = len(problems) - _MAX_LISTED_MISMATCHES
        raise PretrainedWeightsError(
            f"pretrained weights {uri} do not fit torchvision {name} ({len(problems)} mismatches"
            f"): {listed}{f'; and {more} more' if more > 0 else ''}"
        )


def _adapt_stem(stem: nn.Conv2d, in_channels: int, pretrained: bool) -> nn.Conv2d:
    new = nn.Conv2d(
        in_channels,
        stem.out_channels,
        kernel_size=stem.kernel_size,
        stride=stem.stride,
        padding=stem.padding,
        dilation=stem.dilation,
        groups=stem.groups,
        bias=stem.bias is not None,
    )
    if not pretrained:
        _init_stem(new)
        return new
    with torch.no_grad():
        rgb = stem.weight  # (out, 3, kh, kw)
        if in_channels == 1:
            new.weight.copy_(rgb.sum(dim=1, keepdim=True))
        else:
            repeats = math.ceil(in_channels / rgb.shape[1])
            cycled = rgb.repeat(1, repeats, 1, 1)[:, :in_channels]
            new.weight.copy_(cycled * (rgb.shape[1] / in_channels))
        if stem.bias is not None:
            new.bias.copy_(stem.bias)
    return new


def build_torchvision(
    name: str,
    num_classes: int,
    input_shape: tuple[int, int, int] = (1, 128, 128),
    pretrained: str | None = None,
) -> nn.Module:
    """Build a torchvision backbone for (N, C, H, W) input and ``num_classes`` logits.

    Args:
        name: one of ``ADAPTERS`` (resnet18, efficientnet_b0, vgg11).
        num_classes: number of output logits.
        input_shape: (C, H, W) of one example; C replaces the 3-channel stem when C != 3.
        pretrained: optional URI of a torchvision ``state_dict`` for the unmodified model.

    Raises:
        PretrainedWeightsError: see ``read_state_dict``; or the file does not fit the model.
    """
    adapter = ADAPTERS[name]
    model = adapter.build()
    if pretrained is not None:
        state = read_state_dict(pretrained)
        _check_state_dict(model, state, name, str(pretrained))
        model.load_state_dict(state, strict=True)
    in_channels = int(input_shape[0])
    stem = adapter.get_stem(model)
    if in_channels != stem.in_channels:
        adapter.set_stem(model, _adapt_stem(stem, in_channels, pretrained is not None))
    head = adapter.get_head(model)
    new_head = nn.Linear(head.in_features, num_classes)
    adapter.init_head(new_head)
    adapter.set_head(model, new_head)
    return model
