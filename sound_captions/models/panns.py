"""Cnn14, the PANNs AudioSet tagger (Kong et al. 2020, "PANNs: Large-Scale Pretrained Audio Neural
Networks for Audio Pattern Recognition"), as a registry model over the project's features.

The published model computes its own log-mel front-end from raw audio (``torchlibrosa`` layers);
here that front-end is the feature config ``FeatureConfig.panns(...)`` (``kind="panns"``), so the
model takes the stored images (N, 1, mel_bins, frames) like every other registry model. Module
names follow the published code, so a PANNs ``state_dict`` (less its front-end buffers, see
``sound_captions.pretrained``) loads into it key for key. The forward pass returns LOGITS, as the
registry's contract says; the published model returns ``sigmoid`` of the same numbers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_HPARAMS: dict[str, object] = {"dropout": 0.2}


class ConvBlock(nn.Module):
    """Two 3×3 convolutions with batch norm and ReLU, then pooling (PANNs' ``ConvBlock``)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        for conv in (self.conv1, self.conv2):
            nn.init.xavier_uniform_(conv.weight)

    def forward(self, x: torch.Tensor, pool_size: tuple[int, int] = (2, 2)) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, kernel_size=pool_size)


class Cnn14(nn.Module):
    """(N, 1, mel_bins, frames) log-mel images → (N, num_classes) logits.

    Args:
        num_classes: outputs (527 for the published AudioSet checkpoints).
        input_shape: (C, H, W) of one input; C must be 1, H is the number of mel bins.
        dropout: dropout after each conv block (PANNs: 0.2); the head uses 0.5 as published.
    """

    def __init__(self, num_classes: int, input_shape: tuple[int, int, int], *, dropout: float = 0.2) -> None:
        super().__init__()
        channels, mel_bins, frames = input_shape
        from sound_captions.models import InvalidHparamsError

        if channels != 1:
            raise InvalidHparamsError(f"Cnn14 takes one-channel log-mel images, not {channels} channels")
        if min(mel_bins, frames) < 32:  # five 2×2 poolings
            raise InvalidHparamsError(f"input {input_shape} is too small for Cnn14 (at least 32 mel bins and 32 frames)")
        self.dropout = float(dropout)
        self.bn0 = nn.BatchNorm2d(mel_bins)
        widths = (1, 64, 128, 256, 512, 1024, 2048)
        for i in range(6):
            setattr(self, f"conv_block{i + 1}", ConvBlock(widths[i], widths[i + 1]))
        self.fc1 = nn.Linear(2048, 2048, bias=True)
        self.fc_audioset = nn.Linear(2048, num_classes, bias=True)
        for fc in (self.fc1, self.fc_audioset):
            nn.init.xavier_uniform_(fc.weight)
            nn.init.zeros_(fc.bias)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, mel_bins, frames) → the 2048-wide embedding before the last layer."""
        # PANNs' layout is (N, 1, time, mel) with bn0 over the mel axis as channels.
        x = x.transpose(2, 3)  # (N, 1, T, M)
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)
        for i in range(6):
            block = getattr(self, f"conv_block{i + 1}")
            x = block(x, pool_size=(2, 2) if i < 5 else (1, 1))
            x = F.dropout(x, p=self.dropout, training=self.training)
        x = torch.mean(x, dim=3)  # over frequency
        x = torch.amax(x, dim=2) + torch.mean(x, dim=2)  # over time
        x = F.dropout(x, p=0.5, training=self.training)
        return F.relu(self.fc1(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_audioset(self.embed(x))
