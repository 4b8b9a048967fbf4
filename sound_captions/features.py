"""Samples → 1-second windows → log spectrograms of shape (H, W, C).

The config (``FeatureConfig``) and the framing into seconds, with its time contract, live in
``feature_config`` (numpy only) and are imported from here as well.

Spectrogram arithmetic comes from integers only: ``hop_samples = window_samples // width``; with
centred frames torchaudio yields ``1 + window_samples // hop_samples`` frames, of which the first
``width`` are kept (64 frames of 250 samples for the default 64×64; 128 of 125 for 128×128; 256 of
62 for 256×256).

``kind="panns"`` is the front-end of the PANNs AudioSet taggers (Kong et al. 2020, as computed by
their ``torchlibrosa`` layers): a 32 ms Hann window, a 10 ms hop, slaney mel filters from 50 Hz to
the model's fmax, power in dB (``10·log10(max(p, 1e-10))``, no peak clipping, no standardisation).
Its constants follow the sample rate (8, 16 or 32 kHz, the rates PANNs published), and its width is
every centred frame of the second: ``1 + window_samples // hop`` (101 at 16 kHz).
"""

from __future__ import annotations

import numpy as np
import torch

from sound_captions.feature_config import (  # noqa: F401 - the config is imported from here too
    PANNS_FRONT_ENDS,
    FeatureConfig,
    FeatureConfigMismatchError,
    SpectrogramKind,
    count_windows,
    frame_windows,
)


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
