"""The feature config and the 1-second framing: what a decode worker needs, in numpy alone (so
the caption run's decode tasks do not import torch; the spectrograms are in ``features``).

Time contract (ARCHITECTURE.md): second *k* is samples [k·sr, (k+1)·sr). A last partial second
shorter than half a window is dropped; otherwise it is zero-padded.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

SpectrogramKind = Literal["mel", "linear", "panns"]

# PANNs' published front-ends: sample rate → (n_fft = window, hop, fmin, fmax).
PANNS_FRONT_ENDS: dict[int, tuple[int, int, float, float]] = {
    8_000: (256, 80, 50.0, 4_000.0),
    16_000: (512, 160, 50.0, 8_000.0),
    32_000: (1024, 320, 50.0, 14_000.0),
}


class FeatureConfigMismatchError(ValueError):
    """Data or a model was made with a different feature config than the one in use."""


@dataclass(frozen=True)
class FeatureConfig:
    """How a 1-second window becomes a spectrogram image. Hashable; saved with shards and models.

    Attributes:
        sample_rate_hz: audio rate after decoding (mono).
        window_samples: samples per window (one second at ``sample_rate_hz``).
        kind: ``"mel"`` (log-mel), ``"linear"`` (log-magnitude STFT, the study's "classic"), or
            ``"panns"`` (the PANNs taggers' log-mel front-end; see the module docstring).
        height: frequency bins (rows), low frequencies first.
        width: time frames (columns).
        channels: 1, or 3 (the map repeated, for image backbones).
        top_db: dynamic range kept below each window's peak, in dB.
        normalize: per-window standardisation (zero mean, unit variance).
        level_floor_dbfs: ``None`` (default, today's features): each window is clipped at
            ``top_db`` below its own peak and (with ``normalize``) standardised on its own, so a
            silent second and an explosion look alike. A number (e.g. ``-90.0``): level-preserving
            features instead: dB relative to full scale (0 = the peak bin of a full-scale sine),
            floored at this value and mapped with fixed constants to [-1, 1] (floor → -1,
            0 dBFS → 1); ``top_db`` and ``normalize`` are then not used. Omitted from
            ``to_dict`` when ``None`` so the hash of older configs is unchanged.
    """

    sample_rate_hz: int = 16_000
    window_samples: int = 16_000
    kind: SpectrogramKind = "mel"
    height: int = 64
    width: int = 64
    channels: int = 1
    top_db: float = 80.0
    normalize: bool = True
    level_floor_dbfs: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("mel", "linear", "panns"):
            raise ValueError(f"kind must be 'mel', 'linear' or 'panns', not {self.kind!r}")
        if self.kind == "panns":
            if self.sample_rate_hz not in PANNS_FRONT_ENDS:
                raise ValueError(f"the panns front-end exists at {sorted(PANNS_FRONT_ENDS)} Hz, not {self.sample_rate_hz}")
            frames = 1 + self.window_samples // PANNS_FRONT_ENDS[self.sample_rate_hz][1]
            if self.width != frames or self.normalize or self.level_floor_dbfs is not None:
                raise ValueError(
                    f"a panns front-end at {self.sample_rate_hz} Hz has width {frames}, normalize=False and no level floor"
                )
        if self.channels not in (1, 3):
            raise ValueError("channels must be 1 or 3")
        if self.window_samples // self.width < 1:
            raise ValueError("width is larger than the window in samples")
        if self.level_floor_dbfs is not None and not self.level_floor_dbfs < 0:
            raise ValueError("level_floor_dbfs must be negative (dB below full scale) or None")

    @classmethod
    def panns(cls, sample_rate_hz: int = 16_000, mel_bins: int = 64) -> FeatureConfig:
        """The front-end of a PANNs tagger at ``sample_rate_hz`` (one-second windows)."""
        if sample_rate_hz not in PANNS_FRONT_ENDS:
            raise ValueError(f"the panns front-end exists at {sorted(PANNS_FRONT_ENDS)} Hz, not {sample_rate_hz}")
        hop = PANNS_FRONT_ENDS[sample_rate_hz][1]
        return cls(
            sample_rate_hz=sample_rate_hz, window_samples=sample_rate_hz, kind="panns",
            height=mel_bins, width=1 + sample_rate_hz // hop, channels=1, normalize=False,
        )

    @classmethod
    def preset(cls, name: str) -> FeatureConfig:
        """``"64x64x1"`` (default), ``"128x128x1"`` (the study's), ``"256x256x3"``; prefix ``linear-`` for linear spectrograms;
        ``"panns-16k"`` (or ``panns-8k``, ``panns-32k``) for the PANNs front-end."""
        if name.lower().startswith("panns"):
            rate = name.lower().removeprefix("panns").lstrip("-").removesuffix("k") or "16"
            if not rate.isdigit() or int(rate) * 1000 not in PANNS_FRONT_ENDS:
                raise ValueError(f"feature preset must be panns-8k, panns-16k or panns-32k, not {name!r}")
            return cls.panns(int(rate) * 1000)
        kind: SpectrogramKind = "mel"
        if name.startswith("linear-"):
            kind, name = "linear", name[len("linear-") :]
        elif name.startswith("mel-"):
            name = name[len("mel-") :]
        try:
            h, w, c = (int(x) for x in name.lower().split("x"))
        except ValueError:
            raise ValueError(f"feature preset must look like 128x128x1 or linear-256x256x3, not {name!r}") from None
        return cls(kind=kind, height=h, width=w, channels=c)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one window's spectrogram, as stored in shards."""
        return (self.height, self.width, self.channels)

    @property
    def hop_samples(self) -> int:
        if self.kind == "panns":
            return PANNS_FRONT_ENDS[self.sample_rate_hz][1]
        return self.window_samples // self.width

    @property
    def n_fft(self) -> int:
        if self.kind == "panns":
            return PANNS_FRONT_ENDS[self.sample_rate_hz][0]
        if self.kind == "linear":
            return 2 * (self.height - 1)
        return 1024 if self.height <= 128 else 2048

    @property
    def win_length(self) -> int:
        # 25 ms analysis windows for mel; the whole FFT for linear (its resolution is the point).
        return min(self.n_fft, self.sample_rate_hz * 25 // 1000) if self.kind == "mel" else self.n_fft

    @property
    def image_dtype(self) -> type:
        """What a caption run carries the images in between its stages: float16 (half the
        bytes; the memory budgets assume it), float32 for PANNs' dB images, whose rounding would
        cost an imported model its parity with the reference (``sound_captions.pretrained``)."""
        return np.float32 if self.kind == "panns" else np.float16

    @property
    def mel_range_hz(self) -> tuple[float, float]:
        """(f_min, f_max) of the mel filters (mel and panns kinds)."""
        if self.kind == "panns":
            return PANNS_FRONT_ENDS[self.sample_rate_hz][2:]
        return (0.0, self.sample_rate_hz / 2)

    def to_dict(self) -> dict:
        data = asdict(self)
        if data["level_floor_dbfs"] is None:  # keeps the hash of configs made before the field
            del data["level_floor_dbfs"]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> FeatureConfig:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    @property
    def hash(self) -> str:
        """A short stable digest of the config (16 hex digits)."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def check(self, other_hash: str, what: str) -> None:
        if other_hash != self.hash:
            raise FeatureConfigMismatchError(
                f"{what} was made with feature config {other_hash}, but this run uses {self.hash} ({self.to_dict()})"
            )


def count_windows(n_samples: int, cfg: FeatureConfig) -> int:
    """How many 1-second windows a medium of ``n_samples`` samples yields."""
    full, rest = divmod(n_samples, cfg.window_samples)
    return full + (1 if rest * 2 >= cfg.window_samples else 0)


def frame_windows(samples: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Mono samples → ``(n_windows, window_samples)`` float32 (last partial second padded)."""
    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    n = count_windows(samples.size, cfg)
    if n == 0:
        return np.zeros((0, cfg.window_samples), dtype=np.float32)
    needed = n * cfg.window_samples
    if samples.size < needed:
        samples = np.concatenate([samples, np.zeros(needed - samples.size, dtype=np.float32)])
    return samples[:needed].reshape(n, cfg.window_samples)
