"""Samples → 1-second windows → log spectrograms of shape (H, W, C).

Time contract (ARCHITECTURE.md): second *k* is samples [k·sr, (k+1)·sr). A last partial second
shorter than half a window is dropped; otherwise it is zero-padded.

Spectrogram arithmetic comes from integers only: ``hop_samples = window_samples // width``; with
centred frames torchaudio yields ``1 + window_samples // hop_samples`` frames, of which the first
``width`` are kept (128 frames of 125 samples for 128×128; 256 of 62 for 256×256).

``kind="panns"`` is the front-end of the PANNs AudioSet taggers (Kong et al. 2020, as computed by
their ``torchlibrosa`` layers): a 32 ms Hann window, a 10 ms hop, slaney mel filters from 50 Hz to
the model's fmax, power in dB (``10·log10(max(p, 1e-10))``, no peak clipping, no standardisation).
Its constants follow the sample rate (8, 16 or 32 kHz, the rates PANNs published), and its width is
every centred frame of the second: ``1 + window_samples // hop`` (101 at 16 kHz).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch

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
    height: int = 128
    width: int = 128
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
        """``"128x128x1"`` (default), ``"256x256x3"``; prefix ``linear-`` for linear spectrograms;
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


def slaney_mel_filters(sample_rate_hz: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> torch.Tensor:
    """(n_fft // 2 + 1, n_mels) float32 slaney-scale, slaney-normalised triangular mel filters,
    computed in float64 the way ``librosa.filters.mel`` computes them (PANNs' front-end takes its
    filters from there; torchaudio's float32 construction differs by ~1e-6, which a deep model
    turns into ~1e-3 of score)."""

    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        f = np.asarray(f, dtype=np.float64)
        mels = f / (200.0 / 3)
        log = f >= 1000.0
        mels[log] = 15.0 + np.log(f[log] / 1000.0) / (np.log(6.4) / 27.0)
        return mels

    def mel_to_hz(m: np.ndarray) -> np.ndarray:
        freqs = (200.0 / 3) * m
        log = m >= 15.0
        freqs[log] = 1000.0 * np.exp((np.log(6.4) / 27.0) * (m[log] - 15.0))
        return freqs

    fft_freqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sample_rate_hz)
    mel_f = mel_to_hz(np.linspace(*hz_to_mel(np.array([f_min, f_max])), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    weights = np.zeros((n_mels, fft_freqs.size), dtype=np.float32)
    for i in range(n_mels):
        weights[i] = np.maximum(0, np.minimum(-ramps[i] / fdiff[i], ramps[i + 2] / fdiff[i + 1]))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    return torch.from_numpy(np.ascontiguousarray(weights.T))


def panns_stft_kernels(n_fft: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The real and imaginary DFT rows times a periodic Hann window, (n_fft // 2 + 1, 1, n_fft)
    float32 each, built in float64 as PANNs' front-end (``torchlibrosa.stft.STFT``) builds them."""
    n = np.arange(n_fft)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)  # periodic ("fftbins") Hann
    x, y = np.meshgrid(n, n)
    dft = np.power(np.exp(-2 * np.pi * 1j / n_fft), x * y)[:, : n_fft // 2 + 1] * window[:, None]
    real = torch.from_numpy(np.ascontiguousarray(np.real(dft).T, dtype=np.float32))[:, None, :]
    imag = torch.from_numpy(np.ascontiguousarray(np.imag(dft).T, dtype=np.float32))[:, None, :]
    return real, imag


class PannsFrontEnd(torch.nn.Module):
    """(n, samples) → mel power (n, mel_bins, frames): PANNs' front-end, op for op (a centred,
    reflect-padded STFT as two strided convolutions, then the slaney mel filters), because its
    numbers, not just its settings, are what a PANNs model was trained on: an FFT gives the same
    spectrum up to float32 rounding, and in the quiet bins that rounding is a tenth of a dB."""

    def __init__(self, cfg: FeatureConfig) -> None:
        super().__init__()
        self.n_fft, self.hop = cfg.n_fft, cfg.hop_samples
        real, imag = panns_stft_kernels(cfg.n_fft)
        self.register_buffer("kernels", torch.cat([real, imag]))
        self.register_buffer("mel", slaney_mel_filters(cfg.sample_rate_hz, cfg.n_fft, cfg.height, *cfg.mel_range_hz))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.pad(x[:, None, :], (self.n_fft // 2, self.n_fft // 2), mode="reflect")
        real, imag = torch.nn.functional.conv1d(x, self.kernels, stride=self.hop).chunk(2, dim=1)
        power = (real**2 + imag**2).transpose(1, 2)  # (n, frames, bins)
        return torch.matmul(power, self.mel).transpose(1, 2)


class _Transforms:
    """torchaudio transforms per config, built once per process."""

    _cache: dict[FeatureConfig, torch.nn.Module] = {}

    @classmethod
    def get(cls, cfg: FeatureConfig) -> torch.nn.Module:
        module = cls._cache.get(cfg)
        if module is None:
            import torchaudio

            if cfg.kind == "panns":
                module = PannsFrontEnd(cfg)
            elif cfg.kind == "mel":
                f_min, f_max = cfg.mel_range_hz
                module = torchaudio.transforms.MelSpectrogram(
                    sample_rate=cfg.sample_rate_hz,
                    n_fft=cfg.n_fft,
                    win_length=cfg.win_length,
                    hop_length=cfg.hop_samples,
                    n_mels=cfg.height,
                    f_min=f_min,
                    f_max=f_max,
                    power=2.0,
                    center=True,
                    norm="slaney",
                    mel_scale="slaney",
                )
            else:
                module = torchaudio.transforms.Spectrogram(
                    n_fft=cfg.n_fft, win_length=cfg.win_length, hop_length=cfg.hop_samples, power=2.0, center=True
                )
            module.eval()
            cls._cache[cfg] = module
        return module


_FULL_SCALE_DB: dict[FeatureConfig, float] = {}


def full_scale_db(cfg: FeatureConfig) -> float:
    """The peak dB (before any clipping) of a full-scale 1 kHz sine under ``cfg``'s transform."""
    if cfg not in _FULL_SCALE_DB:
        t = torch.arange(cfg.window_samples, dtype=torch.float32) / cfg.sample_rate_hz
        sine = torch.sin(2 * torch.pi * 1000.0 * t)[None]
        with torch.no_grad():
            power = _Transforms.get(cfg)(sine)[..., : cfg.width]
        _FULL_SCALE_DB[cfg] = float(10.0 * torch.log10(torch.clamp(power, min=1e-10)).amax())
    return _FULL_SCALE_DB[cfg]


TRANSFORM_WINDOWS = 16  # windows per call of the spectrogram transform (see ``spectrogram``)


def spectrogram(windows: np.ndarray | torch.Tensor, cfg: FeatureConfig) -> torch.Tensor:
    """``(n, window_samples)`` → log power spectrograms, Tensor of size (n, H, W, C), float32."""
    x = torch.as_tensor(np.asarray(windows, dtype=np.float32)) if not isinstance(windows, torch.Tensor) else windows
    if x.ndim != 2 or x.shape[1] != cfg.window_samples:
        raise ValueError(f"expected windows of shape (n, {cfg.window_samples}), got {tuple(x.shape)}")
    with torch.no_grad():
        # a few windows per transform call: the STFT's intermediates for 64 one-second windows
        # outgrow the CPU's caches, and 16 at a time take half the time (the same numbers, bit
        # for bit: each window's transform is its own)
        transform = _Transforms.get(cfg)
        power = torch.cat([transform(part) for part in torch.split(x, TRANSFORM_WINDOWS)])[..., : cfg.width]  # (n, H, W)
        db = 10.0 * torch.log10(torch.clamp(power, min=1e-10))
        if cfg.kind == "panns":
            pass  # PANNs' power_to_db: ref 1.0, amin 1e-10, no top_db (and normalize is False)
        elif cfg.level_floor_dbfs is not None:
            floor = float(cfg.level_floor_dbfs)
            db = torch.clamp(db - full_scale_db(cfg), min=floor)
            db = (db - floor / 2) / (-floor / 2)
        else:
            peak = db.amax(dim=(1, 2), keepdim=True)
            db = torch.maximum(db, peak - cfg.top_db)
        if cfg.normalize and cfg.level_floor_dbfs is None:
            mean = db.mean(dim=(1, 2), keepdim=True)
            std = db.std(dim=(1, 2), keepdim=True)
            db = (db - mean) / (std + 1e-5)
        out = db.unsqueeze(-1)
        if cfg.channels == 3:
            out = out.expand(-1, -1, -1, 3)
        return out.contiguous()


def compute_features(samples: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Mono samples of one medium → ``(n_seconds, H, W, C)`` float32 features."""
    windows = frame_windows(samples, cfg)
    if windows.shape[0] == 0:
        return np.zeros((0, *cfg.shape), dtype=np.float32)
    return spectrogram(windows, cfg).numpy()


def spectrograms_where(windows: np.ndarray, keep: np.ndarray, cfg: FeatureConfig, dtype=np.float16) -> np.ndarray:
    """Spectrograms (n, H, W, C) of the windows where ``keep`` is true; zeros elsewhere (rows
    that carry a failure or an end mark through a pipeline, not audio). ``dtype``: float16 as
    the shards store them, or float32 where rounding matters (PANNs images in a caption run)."""
    keep = np.asarray(keep, dtype=bool)
    out = np.zeros((len(keep), *cfg.shape), dtype=dtype)
    if keep.any():
        out[keep] = spectrogram(windows[keep], cfg).numpy().astype(dtype, copy=False)
    return out


def pin_torch_threads(threads: float) -> None:
    """Let torch use as many threads as the CPUs a Ray task or actor was given (at least 1)."""
    wanted = max(1, int(threads))
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)


def to_model_input(batch_hwc: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Stored (N, H, W, C) spectrograms (any float dtype) → model input (N, C, H, W) float32."""
    x = torch.as_tensor(batch_hwc)
    return x.to(torch.float32).permute(0, 3, 1, 2).contiguous()
