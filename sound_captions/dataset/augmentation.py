"""Waveform augmentation in a dataset build: a decoded train clip → more train windows.

    decoded train clip ─► original windows (1-s grid, or every ``overlap_hop_s``)
                      ─► ``copies`` × augment_waveform (gain → shift → noise) ─► their windows
    original windows of a task's train clips ─► together_stage ─► stitched sequences

Only the train split is augmented. Splits are assigned per clip before anything is augmented, so
no copy of a clip can land in valid or test; valid and test keep the plain 1-s grid of the time
contract. Every window row says where it came from in the shard column ``augment``:

- ``original``: a window of the clip's own audio on the 1-s grid (what an un-augmented build has);
- ``overlap``: an extra window of the clip's own audio between grid points (``overlap_hop_s``);
- ``copy-N``: a window of the N-th augmented copy (N = 1 … ``copies``);
- ``together``: a second of a stitched sequence (clip id ``together-<hash>``, per-second labels).

Randomness: copy N of clip ``c`` draws from ``np.random.default_rng([seed, stable_hash(c), N])``,
and sequence i led by ``c`` from ``default_rng([seed, TOGETHER_STREAM, stable_hash(c), i])``;
so a rebuild with the same seed gives the same rows whatever the scheduling.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np

from sound_captions.augment import (
    WaveAugmentConfig,
    augment_waveform,
    overlapping_windows,
    stitch_together,
)
from sound_captions.features import FeatureConfig, frame_windows

ORIGINAL = "original"
OVERLAP = "overlap"
TOGETHER = "together"
TOGETHER_PREFIX = "together-"
TOGETHER_STREAM = 7_0907  # keeps the "together" random streams apart from the copies'
_MEMBER_ESCAPES = (("%", "%25"), ("+", "%2B"), ("#", "%23"))  # '%' first when escaping, last when reading


def together_member(clip_id: str, run: int | None = None) -> str:
    """One member of a "together" sequence's ``source`` (``together:<member>+<member>…``): the
    clip id with '%', '+' and '#' escaped (any other id is itself), then ``#<run>`` for one
    stretch of a clip with per-second labels."""
    for char, escaped in _MEMBER_ESCAPES:
        clip_id = clip_id.replace(char, escaped)
    return clip_id if run is None else f"{clip_id}#{run}"


def together_members(source: str) -> set[str]:
    """The clip ids a "together" sequence's ``source`` was stitched from (``together_member``
    read back: ``together:a+b#1+c%2Bd`` → {a, b, c+d})."""
    ids = set()
    for member in source.removeprefix("together:").split("+"):
        clip_id = member.split("#", 1)[0]
        for char, escaped in reversed(_MEMBER_ESCAPES):
            clip_id = clip_id.replace(escaped, char)
        ids.add(clip_id)
    return ids


def copy_tag(n: int) -> str:
    return f"copy-{n}"


def stable_hash(text: str) -> int:
    """A 63-bit integer of ``text`` that is the same in every process (``hash()`` is salted)."""
    return int.from_bytes(hashlib.sha256(str(text).encode()).digest()[:8], "little") >> 1


@dataclass(frozen=True)
class BuildAugmentConfig:
    """What a build adds to its train split; everything off by default.

    Attributes:
        wave: copies (gain → shift → noise) and overlapping windows, see
            :class:`~sound_captions.augment.WaveAugmentConfig`.
        together: stitched sequences led by each train clip (0: off). Each sequence is that clip
            plus ``together_clips - 1`` partners of other label sets, drawn from the train clips
            decoded in the same task (one block of requests, shuffled on the driver so that
            blocks mix classes); a clip without such a partner leads none.
        together_clips: clips per sequence (>= 2).
        together_seconds: each clip gives a run of whole seconds of a length uniform in this
            inclusive range.
        seed: of every random draw (the build's ``--seed``).
    """

    wave: WaveAugmentConfig = field(default_factory=WaveAugmentConfig)
    together: int = 0
    together_clips: int = 3
    together_seconds: tuple[int, int] = (1, 3)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.together < 0:
            raise ValueError(f"together must be >= 0, got {self.together}")
        if self.together_clips < 2:
            raise ValueError(f"together_clips must be >= 2, got {self.together_clips}")
        low, high = self.together_seconds
        if not 1 <= low <= high:
            raise ValueError(f"together_seconds must be (low, high) with 1 <= low <= high, got {self.together_seconds}")

    @property
    def enabled(self) -> bool:
        return self.wave.copies > 0 or self.wave.overlap_hop_s is not None or self.together > 0

    def to_dict(self) -> dict:
        return {
            "wave": self.wave.to_dict(),
            "together": self.together,
            "together_clips": self.together_clips,
            "together_seconds": list(self.together_seconds),
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, data: dict) -> BuildAugmentConfig:
        return cls(
            wave=WaveAugmentConfig.from_dict(data.get("wave", {})),
            together=int(data.get("together", 0)),
            together_clips=int(data.get("together_clips", 3)),
            together_seconds=tuple(int(x) for x in data.get("together_seconds", (1, 3))),
            seed=int(data.get("seed", 0)),
        )


def _windows_at(samples: np.ndarray, cfg: FeatureConfig, hop_s: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Windows (n, window_samples) and their start offsets in samples (n,) int64."""
    if hop_s is None:
        windows = frame_windows(samples, cfg)
        return windows, np.arange(windows.shape[0], dtype=np.int64) * cfg.window_samples
    windows, offsets_s = overlapping_windows(samples, cfg, hop_s)
    return windows, np.rint(offsets_s * cfg.sample_rate_hz).astype(np.int64)


def clip_versions(
    samples: np.ndarray, clip_id: str, cfg: FeatureConfig, aug: BuildAugmentConfig | None
) -> list[tuple[np.ndarray, np.ndarray, list[str]]]:
    """A decoded train clip → its window groups ``(windows (n, window_samples), start offsets in
    samples (n,), tags (n))``: the original first, then ``copies`` augmented versions.

    Without augmentation this is the 1-s grid of the clip, tagged ``original``. With
    ``overlap_hop_s`` every version is cut every hop; the original's windows that fall on the
    grid stay ``original``, the others are ``overlap``.
    """
    if aug is None or not aug.enabled:
        windows, starts = _windows_at(samples, cfg, None)
        return [(windows, starts, [ORIGINAL] * windows.shape[0])]
    hop_s = aug.wave.overlap_hop_s
    windows, starts = _windows_at(samples, cfg, hop_s)
    tags = [ORIGINAL if s % cfg.window_samples == 0 else OVERLAP for s in starts.tolist()]
    out = [(windows, starts, tags)]
    key = stable_hash(clip_id)
    for n in range(1, aug.wave.copies + 1):
        rng = np.random.default_rng([aug.seed, key, n])
        copy = augment_waveform(samples, cfg.sample_rate_hz, aug.wave, rng)
        windows, starts = _windows_at(copy, cfg, hop_s)
        out.append((windows, starts, [copy_tag(n)] * windows.shape[0]))
    return out


def _pick_partners(lead: str, pool: dict[str, tuple[np.ndarray, tuple[str, ...]]], k: int, rng: np.random.Generator) -> list[str]:
    """Up to ``k`` partner clip ids of label sets other than the lead's, different label sets
    first (so the sequence can always be ordered without equal neighbours)."""
    lead_set = frozenset(pool[lead][1])
    candidates = [c for c in sorted(pool) if c != lead and frozenset(pool[c][1]) != lead_set]
    if not candidates:
        return []
    order = [candidates[i] for i in rng.permutation(len(candidates))]
    chosen: list[str] = []
    seen = {lead_set}
    for c in order:  # one per label set first
        if len(chosen) < k and frozenset(pool[c][1]) not in seen:
            chosen.append(c)
            seen.add(frozenset(pool[c][1]))
    return chosen


def together_sequences(
    pool: dict[str, tuple[np.ndarray, tuple[str, ...]]], cfg: FeatureConfig, aug: BuildAugmentConfig
) -> list[tuple[str, str, np.ndarray, list[tuple[str, ...]]]]:
    """Train clips (clip id → (samples (n,), labels)) → stitched sequences
    ``(clip_id, source, windows (n_seconds, window_samples), per-second labels)``.

    Every clip leads ``aug.together`` sequences with up to ``together_clips - 1`` partners of
    other label sets; clips whose label set no other clip differs from lead none.
    """
    out = []
    for lead in sorted(pool):
        for i in range(aug.together):
            rng = np.random.default_rng([aug.seed, TOGETHER_STREAM, stable_hash(lead), i])
            partners = _pick_partners(lead, pool, aug.together_clips - 1, rng)
            if not partners:
                continue
            members = [lead, *partners]
            try:
                samples, labels = stitch_together(
                    [pool[m] for m in members], aug.together_seconds, rng, sample_rate_hz=cfg.sample_rate_hz
                )
            except ValueError:
                continue
            windows = frame_windows(samples, cfg)
            digest = hashlib.sha1(json.dumps([lead, i, members, aug.seed]).encode()).hexdigest()[:16]
            out.append((TOGETHER_PREFIX + digest, "together:" + "+".join(members), windows, labels[: windows.shape[0]]))
    return out


def parse_range(text: str, name: str) -> tuple[float, float]:
    """``"-6,6"`` → (-6.0, 6.0); one number ``"3"`` → (3.0, 3.0)."""
    try:
        parts = [float(x) for x in str(text).split(",")]
    except ValueError:
        raise ValueError(f"{name}: expected LOW,HIGH numbers, got {text!r}") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2:
        raise ValueError(f"{name}: expected LOW,HIGH, got {text!r}")
    return parts[0], parts[1]


def augment_config_from_options(
    *,
    copies: int = 0,
    gain_db: str = "-6,6",
    noise_snr_db: str = "20",
    shift_s: float = 0.25,
    overlap_hop_s: float | None = None,
    together: int = 0,
    together_clips: int = 3,
    together_seconds: str = "1,3",
    seed: int = 0,
) -> BuildAugmentConfig:
    """The ``dataset build --augment-*`` options → :class:`BuildAugmentConfig` (raises
    ``ValueError`` with the option's name). ``noise_snr_db`` ``"none"`` turns the noise off."""
    noise = None if str(noise_snr_db).strip().lower() in ("none", "off", "") else float(noise_snr_db)
    low, high = parse_range(together_seconds, "--together-seconds")
    if low != int(low) or high != int(high):
        raise ValueError(f"--together-seconds: whole seconds, got {together_seconds!r}")
    wave = WaveAugmentConfig(
        copies=int(copies), gain_db=parse_range(gain_db, "--augment-gain-db"), noise_snr_db=noise,
        max_shift_s=float(shift_s), overlap_hop_s=overlap_hop_s,
    )  # fmt: skip
    return BuildAugmentConfig(
        wave=wave, together=int(together), together_clips=int(together_clips), together_seconds=(int(low), int(high)), seed=int(seed)
    )
