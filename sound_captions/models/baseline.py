"""The study's baseline CNN: log-mel image (N, C, H, W) → label logits (N, num_classes).

Four convolution blocks of [Conv2d 3×3 'same' (with bias) → BatchNorm2d → ReLU → MaxPool 2 →
Dropout], then Flatten → Linear → BatchNorm1d → ReLU → Dropout → Linear. This mirrors the Keras
model of the study layer for layer, so its parameter count matches the Keras summary: for three
classes on 1×128×128 input, 4,584,643 trainable parameters, 4,586,115 with the BatchNorm moving
statistics that Keras lists as non-trainable.

The outputs are logits; the task is multi-label, so the sigmoid is applied outside the model
(``BCEWithLogitsLoss`` in training, ``torch.sigmoid`` at caption time).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

DEFAULT_HPARAMS: dict[str, object] = {
    "filters": (32, 64, 128, 256),
    "conv_dropout": 0.25,
    "dense_units": 256,
    "dense_dropout": 0.5,
}


def conv_block(in_channels: int, out_channels: int, dropout: float) -> nn.Sequential:
    """One [Conv 3×3 same → BN → ReLU → MaxPool 2 → Dropout] block; halves H and W (floor)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=True),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Dropout(dropout),
    )


def pooled_size(size: int, n_blocks: int) -> int:
    """Spatial size after ``n_blocks`` floor-halving max-pools."""
    for _ in range(n_blocks):
        size //= 2
    return size


def checked_filters(model: str, input_shape: tuple[int, int, int], filters: Sequence[int]) -> tuple[int, ...]:
    """The channel widths of a stack of conv + 2×2 max-pool blocks, checked against the input:
    at least one block, and an input big enough to survive every pool."""
    _, height, width = input_shape
    filters = tuple(int(f) for f in filters)
    if not filters:
        raise ValueError(f"{model}: filters must name at least one block")
    if pooled_size(height, len(filters)) < 1 or pooled_size(width, len(filters)) < 1:
        raise ValueError(
            f"{model}: input {height}x{width} is too small for {len(filters)} pooling blocks "
            f"(needs at least {2 ** len(filters)}x{2 ** len(filters)})"
        )
    return filters


class BaselineCNN(nn.Module):
    """The study's CNN.

    Args:
        num_classes: number of labels (output logits per example).
        input_shape: (C, H, W) of one input example; H and W must survive ``len(filters)``
            halvings (at least 2**len(filters)).
        filters: output channels of each convolution block.
        conv_dropout: dropout probability after each convolution block.
        dense_units: width of the hidden dense layer.
        dense_dropout: dropout probability after the hidden dense layer.

    Shapes:
        input (N, C, H, W) float32 → output (N, num_classes) logits.
    """

    def __init__(
        self,
        num_classes: int,
        input_shape: tuple[int, int, int] = (1, 128, 128),
        filters: Sequence[int] = (32, 64, 128, 256),
        conv_dropout: float = 0.25,
        dense_units: int = 256,
        dense_dropout: float = 0.5,
    ) -> None:
        super().__init__()
        channels, height, width = input_shape
        filters = checked_filters("baseline", input_shape, filters)
        out_h, out_w = pooled_size(height, len(filters)), pooled_size(width, len(filters))
        blocks = []
        in_channels = channels
        for out_channels in filters:
            blocks.append(conv_block(in_channels, out_channels, conv_dropout))
            in_channels = out_channels
        self.features = nn.Sequential(*blocks)
        self.flatten_size = filters[-1] * out_h * out_w
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(self.flatten_size, dense_units),
            nn.BatchNorm1d(dense_units),
            nn.ReLU(inplace=True),
            nn.Dropout(dense_dropout),
            nn.Linear(dense_units, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) float32 → (N, num_classes) logits."""
        return self.head(self.features(x))
