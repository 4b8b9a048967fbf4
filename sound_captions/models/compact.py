"""A compact CNN: log-mel image (N, C, H, W) → label logits (N, num_classes).

The baseline's convolution blocks with fewer filters, then global average pooling and a small
head instead of the large flatten → dense layer. About 0.1 M parameters for the default
settings, independent of the input size, so it suits 256×256×3 inputs as well as 128×128×1.

With ``context = c > 0`` it is a context model (``models/context_head.py``): the pooled
convolution features of each second, projected to ``head_units``, are its embedding, and the
head judges second k from the embeddings of seconds k-c … k+c; the input is then
(N, C, H, (2c+1)·W).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sound_captions.models.baseline import checked_filters, conv_block
from sound_captions.models.context_head import ContextTagger

DEFAULT_HPARAMS: dict[str, object] = {
    "filters": (16, 32, 64, 128),
    "conv_dropout": 0.1,
    "head_units": 64,
    "head_dropout": 0.3,
    "context": 0,  # seconds of context on each side of the second being judged
}


class CompactCNN(ContextTagger):
    """Small CNN with a global-average-pooling head.

    Args:
        num_classes: number of labels (output logits per example).
        input_shape: (C, H, W) of one input example; H and W at least 2**len(filters).
        filters: output channels of each convolution block.
        conv_dropout: dropout probability after each convolution block.
        head_units: width of the hidden layer of the head.
        head_dropout: dropout probability before the output layer.
        context: seconds c on each side the head sees; 0 judges each second alone.

    Shapes:
        context 0: (N, C, H, W) float32 → (N, num_classes) logits.
        context c: (N, C, H, (2c+1)·W) → (N, num_classes);  embed: (N, C, H, W) → (N, head_units);
        classify: (N, 2c+1, head_units) → (N, num_classes).
    """

    def __init__(
        self,
        num_classes: int,
        input_shape: tuple[int, int, int] = (1, 128, 128),
        filters: Sequence[int] = (16, 32, 64, 128),
        conv_dropout: float = 0.1,
        head_units: int = 64,
        head_dropout: float = 0.3,
        context: int = 0,
    ) -> None:
        super().__init__()
        channels, height, width = input_shape
        filters = checked_filters("compact", input_shape, filters)
        if int(context) < 0:
            raise ValueError(f"compact: context must be >= 0 seconds, got {context}")
        self.context = int(context)
        self.window_width = int(width)
        blocks = []
        in_channels = channels
        for out_channels in filters:
            blocks.append(conv_block(in_channels, out_channels, conv_dropout))
            in_channels = out_channels
        self.features = nn.Sequential(*blocks)
        if self.context == 0:  # the layout of bundles made before context existed
            self.head = nn.Sequential(
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
                nn.Linear(filters[-1], head_units),
                nn.ReLU(inplace=True),
                nn.Dropout(head_dropout),
                nn.Linear(head_units, num_classes),
            )
            return
        self.project = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(filters[-1], head_units), nn.ReLU(inplace=True))
        self.head = nn.Sequential(
            nn.Linear(self.context_windows * head_units, head_units),
            nn.ReLU(inplace=True),
            nn.Dropout(head_dropout),
            nn.Linear(head_units, num_classes),
        )

    def embed(self, windows: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) one-second spectrograms → (N, head_units) embeddings (context > 0)."""
        return self.project(self.features(windows))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """See the class docstring: one second, or 2c+1 seconds side by side."""
        if self.context == 0:
            return self.head(self.features(x))
        return super().forward(x)
