"""Waveform-level augmentation (dataset build, where audio exists; shards hold only
spectrograms): gain, noise and shift of a clip, overlapping windows, and \"together\"
sequences stitched from whole seconds of clips of different classes. NumPy only."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np

from sound_captions.features import FeatureConfig
from sound_captions.sources.requests import Seconds

Labels = tuple[str, ...]


@dataclass(frozen=True)
class WaveAugmentConfig:
    """Waveform augmentation at dataset-build time.

    Attributes:
        copies: augmented copies made of each clip besides the original (0 disables the
            waveform augmentation of ``augment_waveform``).
        gain_db: range of a uniform random gain, in dB. Note: with per-window normalised
            features (``FeatureConfig.normalize``) a gain alone changes nothing in the
            spectrogram; it matters for un-normalised features only.
        noise_snr_db: white Gaussian noise added at this signal-to-noise ratio, measured
            against the RMS of the (gained) clip; ``None`` disables. Digital silence gets none.
        max_shift_s: the clip is shifted by a uniform random whole number of samples in
            [-max_shift_s, +max_shift_s]; 0 disables.
        circular_shift: roll the samples around (True) or shift in zeros (False).
        overlap_hop_s: hop of ``overlapping_windows`` (the study's "overlap"), e.g. 0.5;
            ``None`` keeps the plain 1-s grid.
    """

    copies: int = 0
    gain_db: tuple[float, float] = (-6.0, 6.0)
    noise_snr_db: float | None = 20.0
    max_shift_s: Seconds = 0.25
    circular_shift: bool = False
    overlap_hop_s: Seconds | None = None

    def __post_init__(self) -> None:
        if self.copies < 0:
            raise ValueError(f"copies must be >= 0, got {self.copies}")
        low, high = self.gain_db
        if low > high:
            raise ValueError(f"gain_db must be (low, high) with low <= high, got {self.gain_db}")
        if self.max_shift_s < 0:
            raise ValueError(f"max_shift_s must be >= 0, got {self.max_shift_s}")
        if self.overlap_hop_s is not None and self.overlap_hop_s <= 0:
            raise ValueError(f"overlap_hop_s must be > 0 or None, got {self.overlap_hop_s}")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["gain_db"] = list(self.gain_db)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> WaveAugmentConfig:
        kwargs = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        if "gain_db" in kwargs:
            kwargs["gain_db"] = tuple(float(v) for v in kwargs["gain_db"])
        return cls(**kwargs)


def _rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if samples.size else 0.0


def add_noise(samples: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Add white Gaussian noise so that RMS(signal) / RMS(noise) is ``snr_db`` exactly.

    The drawn noise is rescaled to the target RMS, so the ratio holds for short clips too.
    Digital silence (RMS 0) is returned unchanged: it has no level to measure against.
    """
    samples = np.asarray(samples, dtype=np.float32)
    signal_rms = _rms(samples)
    if signal_rms == 0.0:
        return samples.copy()
    noise = rng.standard_normal(samples.shape)
    noise *= signal_rms / (10.0 ** (snr_db / 20.0)) / max(_rms(noise), 1e-12)
    return (samples + noise).astype(np.float32)


def shift_samples(samples: np.ndarray, shift: int, circular: bool) -> np.ndarray:
    """Move the samples ``shift`` samples later (earlier if negative); same length."""
    samples = np.asarray(samples, dtype=np.float32)
    if shift == 0 or samples.size == 0:
        return samples.copy()
    if circular:
        return np.roll(samples, shift)
    out = np.zeros_like(samples)
    if abs(shift) >= samples.size:
        return out
    if shift > 0:
        out[shift:] = samples[:-shift]
    else:
        out[:shift] = samples[-shift:]
    return out


def augment_waveform(
    samples: np.ndarray,
    sample_rate_hz: int,
    cfg: WaveAugmentConfig,
    rng: np.random.Generator,
) -> np.ndarray:
    """One augmented copy of a mono clip: gain, then time shift, then noise.

    Args:
        samples: (n_samples,) mono audio, float.
        sample_rate_hz: its sample rate.
        cfg: the settings; each step is skipped when switched off.
        rng: the only source of randomness.

    Returns:
        (n_samples,) float32, the same length as the input (no clipping to [-1, 1]: the
        features take a logarithm, not a fixed-point encoding).

    Labels are unchanged. A shift of at most ``max_shift_s`` moves sounds relative to the 1-s
    grid; keep it well below 0.5 s when the clip carries per-second (strong) labels.
    """
    out = np.asarray(samples, dtype=np.float32).reshape(-1).copy()
    low, high = cfg.gain_db
    if (low, high) != (0.0, 0.0):
        out *= np.float32(10.0 ** (rng.uniform(low, high) / 20.0))
    max_shift = int(round(cfg.max_shift_s * sample_rate_hz))
    if max_shift > 0:
        out = shift_samples(out, int(rng.integers(-max_shift, max_shift + 1)), cfg.circular_shift)
    if cfg.noise_snr_db is not None:
        out = add_noise(out, cfg.noise_snr_db, rng)
    return out


def overlapping_windows(
    samples: np.ndarray, cfg_features: FeatureConfig, hop_s: Seconds
) -> tuple[np.ndarray, np.ndarray]:
    """The study's "overlap": 1-s windows every ``hop_s`` seconds instead of every second.

    A window starting at sample ``k * hop_samples`` is kept when at least half of it holds
    audio (it is zero-padded otherwise), the rule the 1-s grid follows (ARCHITECTURE.md): with
    ``hop_s`` equal to the window length this gives exactly ``features.frame_windows``.

    Args:
        samples: (n_samples,) mono audio at ``cfg_features.sample_rate_hz``.
        cfg_features: gives ``sample_rate_hz`` and ``window_samples``.
        hop_s: hop between window starts, > 0 (rounded to whole samples).

    Returns:
        windows (n, window_samples) float32 and their start offsets in seconds (n,) float64
        (computed from integer sample offsets).
    """
    hop_samples = int(round(hop_s * cfg_features.sample_rate_hz))
    if hop_samples < 1:
        raise ValueError(f"hop_s={hop_s} is shorter than one sample")
    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    width = cfg_features.window_samples
    starts = np.arange(0, samples.size, hop_samples, dtype=np.int64)
    starts = starts[(samples.size - starts) * 2 >= width]
    windows = np.zeros((starts.size, width), dtype=np.float32)
    for i, start in enumerate(starts):
        chunk = samples[start : start + width]
        windows[i, : chunk.size] = chunk
    return windows, starts / float(cfg_features.sample_rate_hz)


def window_labels(
    per_second_labels: Sequence[Labels], start_offsets_s: np.ndarray, cfg_features: FeatureConfig
) -> list[Labels]:
    """Labels of overlapping windows from per-second labels: the union over the seconds a window
    touches (a window over seconds 3 and 4 carries both seconds' labels). Labels are sorted."""
    out: list[Labels] = []
    sr, width = cfg_features.sample_rate_hz, cfg_features.window_samples
    for offset in np.asarray(start_offsets_s, dtype=np.float64):
        start = int(round(offset * sr))
        first, last = start // width, (start + width - 1) // width
        merged: set[str] = set()
        for k in range(first, min(last, len(per_second_labels) - 1) + 1):
            merged.update(per_second_labels[k])
        out.append(tuple(sorted(merged)))
    return out


def _whole_seconds(samples: np.ndarray, sample_rate_hz: int) -> np.ndarray:
    """Samples padded/trimmed to whole seconds by the 1-s grid rule → (n_seconds, sample_rate_hz)."""
    full, rest = divmod(samples.size, sample_rate_hz)
    n = full + (1 if rest * 2 >= sample_rate_hz else 0)
    padded = np.zeros(n * sample_rate_hz, dtype=np.float32)
    padded[: min(samples.size, padded.size)] = samples[: padded.size]
    return padded.reshape(n, sample_rate_hz)


def _order_without_repeats(label_sets: list[frozenset], rng: np.random.Generator) -> list[int]:
    """Indices ordered so that neighbours have different label sets (most-remaining-first)."""
    groups: dict[frozenset, list[int]] = {}
    for i, key in enumerate(label_sets):
        groups.setdefault(key, []).append(i)
    for members in groups.values():
        rng.shuffle(members)
    order: list[int] = []
    previous: frozenset | None = None
    while any(groups.values()):
        choices = [k for k, v in groups.items() if v and k != previous]
        if not choices:
            raise ValueError(
                "stitch_together: the clips cannot be ordered without two neighbours of the "
                "same label set; give clips of more different classes"
            )
        most = max(len(groups[k]) for k in choices)
        best = [k for k in choices if len(groups[k]) == most]
        previous = best[int(rng.integers(len(best)))]
        order.append(groups[previous].pop())
    return order


def stitch_together(
    clips: Sequence[tuple[np.ndarray, Labels]],
    seconds_each: int | tuple[int, int],
    rng: np.random.Generator,
    *,
    sample_rate_hz: int = 16_000,
) -> tuple[np.ndarray, list[Labels]]:
    """The study's "together": a synthetic sequence of whole seconds from clips of different classes.

    Every clip contributes one run of whole seconds (a random run of ``seconds_each`` seconds,
    or of a random length in [low, high] for a tuple), taken on the clip's own 1-s grid; the
    clips are put in a random order in which neighbours never share the same label set, so
    every junction is a transition between different sounds.

    Args:
        clips: (samples (n,), clip labels) pairs, mono at ``sample_rate_hz``. A clip shorter
            than its run gives all its seconds (1-s grid rule: a last part of >= 0.5 s is
            zero-padded, shorter is dropped; a clip with no second is skipped).
        seconds_each: whole seconds per clip (>= 1), or an inclusive (low, high) range.
        rng: the only source of randomness.
        sample_rate_hz: sample rate of all clips (= samples per second of the grid).

    Returns:
        samples (n_seconds * sample_rate_hz,) float32 and the labels of each second (a list of
        n_seconds label tuples, sorted). Second *k* of the result is exactly one second of one
        clip, so its labels are that clip's labels.

    Raises:
        ValueError: no usable clip, a bad ``seconds_each``, or clips that cannot be ordered
            without two neighbours of the same label set.
    """
    low, high = (seconds_each, seconds_each) if isinstance(seconds_each, int) else seconds_each
    if not 1 <= low <= high:
        raise ValueError(f"seconds_each must be >= 1 (or a (low, high) range), got {seconds_each}")
    usable = [
        (
            _whole_seconds(np.asarray(s, dtype=np.float32).reshape(-1), sample_rate_hz),
            tuple(sorted(lab)),
        )
        for s, lab in clips
    ]
    usable = [(sec, lab) for sec, lab in usable if sec.shape[0] > 0]
    if not usable:
        raise ValueError("stitch_together: no clip has a whole second of audio")
    order = _order_without_repeats([frozenset(lab) for _, lab in usable], rng)
    parts: list[np.ndarray] = []
    labels: list[Labels] = []
    for i in order:
        seconds, clip_labels = usable[i]
        run = min(int(rng.integers(low, high + 1)), seconds.shape[0])
        first = int(rng.integers(0, seconds.shape[0] - run + 1))
        parts.append(seconds[first : first + run].reshape(-1))
        labels.extend([clip_labels] * run)
    return np.concatenate(parts), labels
