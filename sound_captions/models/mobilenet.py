"""An efficient tagger with audio context: per-second spectrograms → per-second label logits.

    window k-c … k … k+c ─► MobileNetV3 encoder (shared, once per second) ─► embeddings (K, D)
                        ─► context head (concat → Linear → Hardswish → Dropout → Linear) ─► logits of second k

The encoder is torchvision's MobileNetV3 (the inverted-residual, squeeze-excitation blocks that
EfficientAT's AudioSet taggers use) with a stem for C input channels, global average pooling
and a projection to a ``embed_dim`` embedding. The head sees the embeddings of the ``context``
seconds before and after second k as well as its own (K = 2·context + 1), so onsets, tails and
short gaps are judged with the audio around them, while each output still belongs to [k, k+1).

``forward`` (windows side by side) and ``embed`` + ``classify`` (the caption run's way) give the
same numbers; see ``models/context_head.py``.

Seconds outside the medium (or clip) are filled with the spectrogram of digital silence.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.mobilenetv3 import MobileNetV3, _mobilenet_v3_conf

from sound_captions.models.context_head import ContextTagger

DEFAULT_HPARAMS: dict[str, object] = {
    "arch": "small",  # torchvision's mobilenet_v3_small / mobilenet_v3_large block table
    "width_mult": 1.0,
    "embed_dim": 256,
    "context": 1,  # seconds of context on each side of the second being judged
    "dropout": 0.2,
}


class MobileNetContext(ContextTagger):
    """MobileNetV3 encoder per second + a context head over neighbouring seconds.

    Args:
        num_classes: number of labels (output logits per second).
        input_shape: (C, H, W) of ONE second's spectrogram (the feature config's shape).
        arch: ``"small"`` or ``"large"`` (torchvision's block tables).
        width_mult: channel multiplier of the block table (EfficientAT's ``mn04`` … ``mn10``
            use 0.4 … 1.0 of the large table).
        embed_dim: size D of a second's embedding.
        context: seconds c on each side; 0 makes it a plain per-second tagger.
        dropout: dropout before the last layer.

    Shapes:
        forward: (N, C, H, (2c+1)·W) float32 → (N, num_classes) logits.
        embed: (N, C, H, W) → (N, D);  classify: (N, 2c+1, D) → (N, num_classes).
    """

    def __init__(
        self,
        num_classes: int,
        input_shape: tuple[int, int, int] = (1, 128, 128),
        arch: str = "small",
        width_mult: float = 1.0,
        embed_dim: int = 256,
        context: int = 1,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if arch not in ("small", "large"):
            raise ValueError(f"mobilenet: arch must be 'small' or 'large', not {arch!r}")
        if int(context) < 0:
            raise ValueError(f"mobilenet: context must be >= 0 seconds, got {context}")
        channels, height, width = input_shape
        if min(height, width) < 32:
            raise ValueError(f"mobilenet: input {height}x{width} is too small (at least 32x32)")
        self.context = int(context)
        self.window_width = int(width)
        setting, last_channel = _mobilenet_v3_conf(f"mobilenet_v3_{arch}", width_mult=float(width_mult))
        backbone = MobileNetV3(setting, last_channel)  # torchvision's initialisation
        stem = backbone.features[0][0]
        if channels != stem.in_channels:
            new = nn.Conv2d(channels, stem.out_channels, stem.kernel_size, stem.stride, stem.padding, bias=False)
            nn.init.kaiming_normal_(new.weight, mode="fan_out")
            backbone.features[0][0] = new
        self.encoder = backbone.features
        encoded = setting[-1].out_channels * 6  # the last 1×1 convolution of the feature stack
        self.project = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(encoded, int(embed_dim)), nn.Hardswish())
        k = 2 * self.context + 1
        self.head = nn.Sequential(
            nn.Linear(k * int(embed_dim), int(embed_dim)),
            nn.Hardswish(),
            nn.Dropout(float(dropout)),
            nn.Linear(int(embed_dim), num_classes),
        )
        # Measured on the real-sound benchmark's dataset (from scratch, 4 epochs, validation mAP):
        # torchvision's ImageNet choices, N(0, 0.01) linear layers and batch-norm momentum 0.01,
        # reached 0.09; PyTorch's default linear init and momentum 0.1 reached 0.39. The slow
        # running statistics also left eval-mode outputs nearly independent of the input.
        for module in self.encoder.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = 0.1

    def embed(self, windows: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) one-second spectrograms → (N, D) embeddings."""
        return self.project(self.encoder(windows))
