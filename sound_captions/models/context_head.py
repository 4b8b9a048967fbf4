"""What every model with audio context shares: one encoder pass per second, then a head over
the embeddings of seconds k-c … k+c that judges second k.

A subclass sets ``context``, ``window_width`` and ``head`` (the last layer a ``Linear`` to the
labels) and implements ``embed``; this class gives it the two ways in that give the same numbers
(eval mode):

- ``forward(x)``: x (N, C, H, K·W), the K windows side by side along time (what
  ``sound_captions.context.stack_context`` builds for training and evaluation);
- ``embed(windows)`` once per second of a medium, then ``classify(...)``, which is what the caption run
  does, so each second is encoded once however wide the context.
"""

from __future__ import annotations

import torch
from torch import nn


class ContextTagger(nn.Module):
    """Base of the context models; see the module docstring for the contract."""

    context: int
    window_width: int
    head: nn.Sequential

    @property
    def context_windows(self) -> int:
        """K = 2·context + 1: windows the head sees per output second."""
        return 2 * self.context + 1

    def embed(self, windows: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) one-second spectrograms → (N, D) embeddings."""
        raise NotImplementedError

    def classify(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(N, K, D) embeddings of seconds k-c … k+c → (N, num_classes) logits of second k."""
        return self.head(embeddings.flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, K·W) windows side by side → (N, num_classes) logits of the middle second."""
        n, c, h, w = x.shape
        k = self.context_windows
        if w != k * self.window_width:
            raise ValueError(f"{type(self).__name__}: expected {k} windows of {self.window_width} frames side by side, got width {w}")
        windows = x.reshape(n, c, h, k, self.window_width).permute(0, 3, 1, 2, 4).reshape(n * k, c, h, self.window_width)
        return self.classify(self.embed(windows).reshape(n, k, -1))
