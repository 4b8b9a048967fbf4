"""Batch-level augmentation (train loop, on model-ready tensors): SpecAugment masks, a
circular time roll, mixup and the \"together\" splice, from one seeded torch generator."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
import torch

Labels = tuple[str, ...]


@dataclass(frozen=True)
class BatchAugmentConfig:
    """Batch augmentation in the train loop; every count, width or probability 0 disables its step.

    Attributes:
        spec_time_masks: SpecAugment time masks per example.
        spec_time_width: maximum width of a time mask, in frames (the width is uniform in
            [0, spec_time_width], as in the SpecAugment paper).
        spec_freq_masks: SpecAugment frequency masks per example.
        spec_freq_width: maximum height of a frequency mask, in rows.
        mixup_alpha: mixup with lambda ~ Beta(alpha, alpha) per example; 0 disables.
        time_shift_frames: circular roll along time by a uniform whole number of frames in
            [-time_shift_frames, +time_shift_frames].
        together_prob: fraction of examples spliced with a partner of another label set
            (the study's "together" approach, inside the batch).
    """

    spec_time_masks: int = 0
    spec_time_width: int = 16
    spec_freq_masks: int = 0
    spec_freq_width: int = 16
    mixup_alpha: float = 0.0
    time_shift_frames: int = 0
    together_prob: float = 0.0

    def __post_init__(self) -> None:
        for name in (
            "spec_time_masks",
            "spec_time_width",
            "spec_freq_masks",
            "spec_freq_width",
            "time_shift_frames",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.mixup_alpha < 0:
            raise ValueError(f"mixup_alpha must be >= 0, got {self.mixup_alpha}")
        if not 0.0 <= self.together_prob <= 1.0:
            raise ValueError(f"together_prob must be in [0, 1], got {self.together_prob}")

    @property
    def enabled(self) -> bool:
        """Whether any step changes a batch."""
        return bool(
            (self.spec_time_masks and self.spec_time_width)
            or (self.spec_freq_masks and self.spec_freq_width)
            or self.mixup_alpha > 0
            or self.time_shift_frames
            or self.together_prob > 0
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> BatchAugmentConfig:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


def _uniform(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=generator.device)


def _randint(high: int, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Uniform integers in [0, high) (high >= 1) on the generator's device."""
    return torch.randint(0, high, shape, generator=generator, device=generator.device)


def roll_time(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Roll each example of (N, C, H, W) along W (time) by ``shifts`` (N,) frames, circularly."""
    n, c, h, w = x.shape
    index = (torch.arange(w, device=x.device)[None, :] - shifts.to(x.device)[:, None]) % w
    return torch.gather(x, 3, index[:, None, None, :].expand(n, c, h, w))


def _band_masks(
    n: int, size: int, n_masks: int, max_width: int, generator: torch.Generator
) -> torch.Tensor:
    """(n, size) bool: per example, ``n_masks`` bands of uniform width in [0, max_width]."""
    max_width = min(max_width, size)
    widths = _randint(max_width + 1, (n, n_masks), generator)
    starts = (_uniform((n, n_masks), generator) * (size - widths + 1)).long()
    pos = torch.arange(size, device=generator.device)[None, None, :]
    inside = (pos >= starts[..., None]) & (pos < (starts + widths)[..., None])
    return inside.any(dim=1)


def spec_augment(
    x: torch.Tensor, cfg: BatchAugmentConfig, generator: torch.Generator
) -> torch.Tensor:
    """SpecAugment masks on (N, C, H, W): masked rows/columns get the example's mean value."""
    n, _, h, w = x.shape
    fill = x.mean(dim=(1, 2, 3), keepdim=True)
    masked = torch.zeros((n, 1, h, w), dtype=torch.bool, device=x.device)
    if cfg.spec_time_masks and cfg.spec_time_width:
        cols = _band_masks(n, w, cfg.spec_time_masks, cfg.spec_time_width, generator).to(x.device)
        masked |= cols[:, None, None, :]
    if cfg.spec_freq_masks and cfg.spec_freq_width:
        rows = _band_masks(n, h, cfg.spec_freq_masks, cfg.spec_freq_width, generator).to(x.device)
        masked |= rows[:, None, :, None]
    return torch.where(masked, fill, x)


def _beta(alpha: float, n: int, generator: torch.Generator) -> torch.Tensor:
    """n draws of Beta(alpha, alpha). torch's Beta takes no generator, so a NumPy generator
    seeded from ``generator`` draws them (still no global state involved)."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())
    return torch.from_numpy(np.random.default_rng(seed).beta(alpha, alpha, size=n))


def mixup(
    x: torch.Tensor, y: torch.Tensor, alpha: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix every example with a random partner of the batch.

    x_i ← λ_i·x_i + (1 − λ_i)·x_p(i) with λ_i ~ Beta(α, α); labels y_i ← max(y_i, y_p(i)).

    Labels are combined with max (the multi-label union), not λ-weighted: in a 1-s window that
    holds both sounds, both are present, which is what the per-second labels state. The cost:
    with a λ near 1 the partner is faint yet labelled active; small α (e.g. 0.2–0.4) puts most
    λ near 0 or 1, where one example dominates — then the partner's label is the soft part,
    which the union does not weaken. Pick α accordingly, or leave mixup off.
    """
    n = x.shape[0]
    partner = torch.randperm(n, generator=generator, device=generator.device).to(x.device)
    lam = _beta(alpha, n, generator).to(device=x.device, dtype=x.dtype).view(n, 1, 1, 1)
    return lam * x + (1.0 - lam) * x[partner], torch.maximum(y, y[partner])


def splice_together(
    x: torch.Tensor, y: torch.Tensor, prob: float, generator: torch.Generator, label_columns: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The "together" approach inside a batch: for each example, with probability ``prob``,
    keep its first k time frames (k uniform in [1, W-1]) and take the rest from a random
    partner with a different label set. Labels become the union: the 1-s window now holds
    both sounds, as a per-second label of a real transition would say. Examples whose label
    set no other example differs from are left alone. ``label_columns``: only the first so many
    columns of ``y`` are labels (the rest, e.g. a teacher's targets, are carried along).
    """
    n, _, _, w = x.shape
    if n < 2 or w < 2:
        return x, y
    chosen = (_uniform((n,), generator) < prob).to(x.device)
    cut = (1 + _randint(w - 1, (n,), generator)).to(x.device)
    scores = _uniform((n, n), generator).to(x.device)
    labels = y if label_columns is None else y[:, :label_columns]
    differs = (labels[:, None, :] != labels[None, :, :]).any(dim=-1)
    partner = torch.where(differs, scores, torch.full_like(scores, -1.0)).argmax(dim=1)
    chosen &= differs.any(dim=1)
    frames = torch.arange(w, device=x.device)[None, :]
    take_partner = chosen[:, None] & (frames >= cut[:, None])  # (n, w)
    x_out = torch.where(take_partner[:, None, None, :], x[partner], x)
    y_out = torch.where(chosen[:, None], torch.maximum(y, y[partner]), y)
    return x_out, y_out


def apply_batch_augment(
    x: torch.Tensor, y: torch.Tensor, cfg: BatchAugmentConfig, generator: torch.Generator, label_columns: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment a training batch: time roll → "together" splice → mixup → SpecAugment masks.

    Args:
        x: (N, C, H, W) spectrograms (H = frequency rows, W = time frames), float.
        y: (N, L) multi-hot labels, float.
        cfg: which steps run; a disabled config returns ``x`` and ``y`` themselves.
        generator: the only source of randomness (CPU or the batch's device); the inputs are
            never modified in place.
        label_columns: only the first so many columns of ``y`` are labels; further columns
            (distillation's teacher targets) are mixed like them but never choose partners.

    Returns:
        (x, y) of the same shapes, dtypes and device.
    """
    if x.ndim != 4 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"expected x (N, C, H, W) and y (N, L), got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if not cfg.enabled or x.shape[0] == 0:
        return x, y
    if cfg.time_shift_frames:
        k = cfg.time_shift_frames
        x = roll_time(x, _randint(2 * k + 1, (x.shape[0],), generator) - k)
    if cfg.together_prob > 0:
        x, y = splice_together(x, y, cfg.together_prob, generator, label_columns)
    if cfg.mixup_alpha > 0:
        x, y = mixup(x, y, cfg.mixup_alpha, generator)
    if (cfg.spec_time_masks and cfg.spec_time_width) or (
        cfg.spec_freq_masks and cfg.spec_freq_width
    ):
        x = spec_augment(x, cfg, generator)
    return x, y
