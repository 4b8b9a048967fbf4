"""Augmentation: shapes kept, seeded determinism, global RNG untouched, and each step's effect."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sound_captions.augment import (
    BatchAugmentConfig,
    WaveAugmentConfig,
    add_noise,
    apply_batch_augment,
    augment_waveform,
    overlapping_windows,
    stitch_together,
    window_labels,
)
from sound_captions.features import FeatureConfig, frame_windows

SR = 16_000


def sine(seconds: float, freq_hz: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    n = int(round(seconds * SR))
    return (amplitude * np.sin(2 * np.pi * freq_hz * np.arange(n) / SR)).astype(np.float32)


def snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    noise = noisy.astype(np.float64) - clean
    return 20 * np.log10(
        np.sqrt(np.mean(clean.astype(np.float64) ** 2)) / np.sqrt(np.mean(noise**2))
    )


def batch(n: int = 16, labels: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((n, 1, 32, 40), generator=g)
    y = (torch.rand((n, labels), generator=g) < 0.4).float()
    return x, y


class GlobalRngUnchanged:
    """Context manager asserting the global NumPy and torch RNG states did not move."""

    def __enter__(self):
        self.np_state = np.random.get_state()
        self.torch_state = torch.random.get_rng_state()
        return self

    def __exit__(self, *exc):
        after = np.random.get_state()
        assert after[0] == self.np_state[0] and np.array_equal(after[1], self.np_state[1])
        assert after[2:] == self.np_state[2:]
        assert torch.equal(torch.random.get_rng_state(), self.torch_state)
        return False


ALL_ON = BatchAugmentConfig(
    spec_time_masks=2,
    spec_time_width=8,
    spec_freq_masks=2,
    spec_freq_width=6,
    mixup_alpha=0.4,
    time_shift_frames=5,
    together_prob=0.5,
)

# -- waveform level -----------------------------------------------------------------------------


@pytest.mark.parametrize("target", [0.0, 10.0, 20.0, 35.0])
def test_noise_reaches_the_requested_snr(target):
    clean = sine(1.0)
    noisy = add_noise(clean, target, np.random.default_rng(1))
    assert abs(snr_db(clean, noisy) - target) < 0.5


def test_digital_silence_gets_no_noise():
    silence = np.zeros(SR, dtype=np.float32)
    out = augment_waveform(
        silence, SR, WaveAugmentConfig(max_shift_s=0.0), np.random.default_rng(0)
    )
    assert np.array_equal(out, silence)


def test_waveform_augment_shape_dtype_determinism_and_global_rng():
    clip = sine(2.3)
    cfg = WaveAugmentConfig(copies=1)
    with GlobalRngUnchanged():
        a = augment_waveform(clip, SR, cfg, np.random.default_rng(7))
        b = augment_waveform(clip, SR, cfg, np.random.default_rng(7))
        c = augment_waveform(clip, SR, cfg, np.random.default_rng(8))
    assert a.shape == clip.shape and a.dtype == np.float32
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a, clip)


def test_gain_only_scales_and_off_is_identity():
    clip = sine(1.0)
    off = WaveAugmentConfig(gain_db=(0.0, 0.0), noise_snr_db=None, max_shift_s=0.0)
    assert np.array_equal(augment_waveform(clip, SR, off, np.random.default_rng(0)), clip)
    gain = WaveAugmentConfig(gain_db=(6.0, 6.0), noise_snr_db=None, max_shift_s=0.0)
    out = augment_waveform(clip, SR, gain, np.random.default_rng(0))
    np.testing.assert_allclose(out, clip * 10 ** (6 / 20), rtol=1e-6)


@pytest.mark.parametrize("circular", [False, True])
def test_shift_moves_an_impulse_within_the_bound(circular):
    clip = np.zeros(SR, dtype=np.float32)
    clip[SR // 2] = 1.0
    cfg = WaveAugmentConfig(
        gain_db=(0.0, 0.0), noise_snr_db=None, max_shift_s=0.1, circular_shift=circular
    )
    moved = set()
    for seed in range(20):
        out = augment_waveform(clip, SR, cfg, np.random.default_rng(seed))
        (where,) = np.flatnonzero(out)
        assert abs(int(where) - SR // 2) <= SR // 10
        moved.add(int(where))
    assert len(moved) > 10


def test_zero_padded_shift_shifts_in_zeros():
    clip = np.ones(SR, dtype=np.float32)
    cfg = WaveAugmentConfig(gain_db=(0.0, 0.0), noise_snr_db=None, max_shift_s=0.25)
    out = augment_waveform(clip, SR, cfg, np.random.default_rng(3))
    zeros = int((out == 0).sum())
    assert 0 < zeros <= SR // 4
    # the zeros are all at one end
    assert out[:zeros].sum() == 0 or out[-zeros:].sum() == 0


def test_wave_config_round_trip():
    cfg = WaveAugmentConfig(copies=3, gain_db=(-3.0, 2.0), noise_snr_db=None, overlap_hop_s=0.5)
    assert WaveAugmentConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError):
        WaveAugmentConfig(gain_db=(3.0, -3.0))


def test_overlapping_windows_with_one_second_hop_equal_the_grid():
    cfg = FeatureConfig()
    clip = np.random.default_rng(0).standard_normal(int(3.6 * SR)).astype(np.float32)
    windows, offsets = overlapping_windows(clip, cfg, 1.0)
    np.testing.assert_array_equal(windows, frame_windows(clip, cfg))
    np.testing.assert_array_equal(offsets, [0.0, 1.0, 2.0, 3.0])


def test_overlapping_windows_half_second_hop():
    cfg = FeatureConfig()
    clip = np.arange(int(3.2 * SR), dtype=np.float32)
    windows, offsets = overlapping_windows(clip, cfg, 0.5)
    # starts 0, .5, ..., 2.5 (>= 0.5 s of audio left); 3.0 has 0.2 s left and is dropped
    np.testing.assert_array_equal(offsets, [0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
    assert windows.shape == (6, SR) and windows.dtype == np.float32
    for window, offset in zip(windows, offsets, strict=True):
        start = int(offset * SR)
        real = clip[start : start + SR]
        np.testing.assert_array_equal(window[: real.size], real)
        assert not window[real.size :].any()


def test_window_labels_are_the_union_of_touched_seconds():
    cfg = FeatureConfig()
    per_second = [("a",), ("b",), (), ("c",)]
    offsets = np.array([0.0, 0.5, 1.0, 2.5, 3.0])
    assert window_labels(per_second, offsets, cfg) == [("a",), ("a", "b"), ("b",), ("c",), ("c",)]


def test_stitch_together_labels_per_second_and_no_repeated_neighbours():
    clips = [
        (sine(3.0, 300), ("dog",)),
        (sine(2.0, 600), ("cat",)),
        (sine(4.0, 900), ("dog",)),
        (sine(3.0, 1200), ("bird", "wind")),
    ]
    with GlobalRngUnchanged():
        samples, labels = stitch_together(clips, 2, np.random.default_rng(5), sample_rate_hz=SR)
        again, labels_again = stitch_together(clips, 2, np.random.default_rng(5), sample_rate_hz=SR)
    assert np.array_equal(samples, again) and labels == labels_again
    assert samples.dtype == np.float32
    assert samples.size == len(labels) * SR == 8 * SR
    # runs of 2 s, neighbours differ
    runs = [labels[k] for k in range(0, len(labels), 2)]
    assert all(labels[k] == labels[k + 1] for k in range(0, len(labels), 2))
    assert all(a != b for a, b in zip(runs, runs[1:], strict=False))
    assert sorted(runs) == sorted([("dog",), ("cat",), ("dog",), ("bird", "wind")])
    # each second is one second of a clip of that label: the sine frequency identifies the clip
    freq_of = {("cat",): {600}, ("dog",): {300, 900}, ("bird", "wind"): {1200}}
    for k, lab in enumerate(labels):
        spectrum = np.abs(np.fft.rfft(samples[k * SR : (k + 1) * SR]))
        assert int(np.argmax(spectrum)) in freq_of[lab]


def test_stitch_together_refuses_a_single_class():
    clips = [(sine(2.0), ("dog",)), (sine(2.0), ("dog",))]
    with pytest.raises(ValueError, match="same label set"):
        stitch_together(clips, 1, np.random.default_rng(0), sample_rate_hz=SR)


def test_stitch_together_short_clip_gives_what_it_has():
    clips = [(sine(1.6), ("a",)), (sine(0.3), ("b",)), (sine(5.0), ("c",))]
    samples, labels = stitch_together(clips, (2, 3), np.random.default_rng(0), sample_rate_hz=SR)
    assert labels.count(("a",)) == 2  # 1.6 s → 2 seconds (last part padded)
    assert ("b",) not in labels  # 0.3 s: no whole second
    assert 2 <= labels.count(("c",)) <= 3
    assert samples.size == len(labels) * SR


# -- batch level --------------------------------------------------------------------------------


def test_disabled_config_is_identity():
    x, y = batch()
    cfg = BatchAugmentConfig()
    assert not cfg.enabled
    xa, ya = apply_batch_augment(x, y, cfg, torch.Generator().manual_seed(0))
    assert torch.equal(xa, x) and torch.equal(ya, y)
    # counts without a width (or widths without a count) do nothing either
    assert not BatchAugmentConfig(spec_time_masks=3, spec_time_width=0).enabled


def test_batch_augment_shapes_dtypes_determinism_and_global_rng():
    x, y = batch()
    x0, y0 = x.clone(), y.clone()
    with GlobalRngUnchanged():
        a = apply_batch_augment(x, y, ALL_ON, torch.Generator().manual_seed(3))
        b = apply_batch_augment(x, y, ALL_ON, torch.Generator().manual_seed(3))
        c = apply_batch_augment(x, y, ALL_ON, torch.Generator().manual_seed(4))
    assert a[0].shape == x.shape and a[0].dtype == torch.float32
    assert a[1].shape == y.shape and a[1].dtype == torch.float32
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    assert torch.equal(x, x0) and torch.equal(y, y0)  # inputs untouched


def test_config_round_trip():
    assert BatchAugmentConfig.from_dict(ALL_ON.to_dict()) == ALL_ON
    assert BatchAugmentConfig.from_dict({}) == BatchAugmentConfig()
    with pytest.raises(ValueError):
        BatchAugmentConfig(together_prob=1.5)


def masked_columns(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """(N, W) bool: time columns replaced by the example's mean."""
    fill = before.mean(dim=(1, 2, 3), keepdim=True)
    return ((after == fill) & (before != fill)).all(dim=2).all(dim=1)


def test_time_masks_zero_contiguous_columns_of_bounded_width():
    x, y = batch(n=400)
    cfg = BatchAugmentConfig(spec_time_masks=1, spec_time_width=10)
    out, y_out = apply_batch_augment(x, y, cfg, torch.Generator().manual_seed(0))
    assert torch.equal(y_out, y)
    cols = masked_columns(x, out)
    widths = cols.sum(dim=1)
    # the rest is untouched, and the masked part is exactly the counted columns
    changed = (out != x).any(dim=2).any(dim=1)
    assert torch.equal(changed, cols)
    for row in cols:
        idx = row.nonzero().flatten()
        if idx.numel():
            assert int(idx[-1] - idx[0]) + 1 == idx.numel()  # one contiguous band
    assert int(widths.max()) == 10 and int(widths.min()) == 0  # uniform in [0, 10]
    assert abs(float(widths.float().mean()) - 5.0) < 0.6


def test_freq_masks_fill_rows_with_the_example_mean():
    x, y = batch(n=300)
    cfg = BatchAugmentConfig(spec_freq_masks=2, spec_freq_width=4)
    out, _ = apply_batch_augment(x, y, cfg, torch.Generator().manual_seed(1))
    fill = x.mean(dim=(1, 2, 3), keepdim=True)
    rows = ((out == fill) & (x != fill)).all(dim=3).all(dim=1)  # (N, H)
    changed = (out != x).any(dim=3).any(dim=1)
    assert torch.equal(rows, changed)
    counts = rows.sum(dim=1)
    assert int(counts.max()) <= 8 and int(counts.max()) >= 6
    assert torch.equal((out != x).any(dim=2).any(dim=1), counts[:, None].expand(-1, x.shape[3]) > 0)


def test_normalised_features_are_masked_with_zero():
    x, y = batch(n=8)
    x = (x - x.mean(dim=(1, 2, 3), keepdim=True)) / x.std(dim=(1, 2, 3), keepdim=True)
    out, _ = apply_batch_augment(
        x,
        y,
        BatchAugmentConfig(spec_time_masks=1, spec_time_width=40),
        torch.Generator().manual_seed(2),
    )
    masked = out[(out != x)]
    assert masked.numel() > 0 and masked.abs().max() < 1e-6


def test_time_shift_is_a_circular_roll_per_example():
    x, y = batch(n=32)
    out, y_out = apply_batch_augment(
        x, y, BatchAugmentConfig(time_shift_frames=6), torch.Generator().manual_seed(0)
    )
    assert torch.equal(y_out, y)
    seen = set()
    for i in range(x.shape[0]):
        matches = [s for s in range(-6, 7) if torch.equal(out[i], torch.roll(x[i], s, dims=-1))]
        assert matches, f"example {i} is not a roll of at most 6 frames"
        seen.add(matches[0])
    assert len(seen) > 4


def test_mixup_labels_are_the_max_and_inputs_convex_combinations():
    n = 64
    # each example is a constant map of value i, so the mix reveals lambda and the partner
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 4, 5).contiguous()
    y = torch.nn.functional.one_hot(torch.arange(n) % 7, 7).float()
    out, y_out = apply_batch_augment(
        x, y, BatchAugmentConfig(mixup_alpha=0.4), torch.Generator().manual_seed(0)
    )
    mixed_any = False
    for i in range(n):
        value = float(out[i, 0, 0, 0])
        assert torch.allclose(out[i], torch.full_like(out[i], value))
        # find the partner whose mix gives this value and whose max gives these labels
        candidates = [
            j
            for j in range(n)
            if torch.equal(y_out[i], torch.maximum(y[i], y[j]))
            and (j == i or 0.0 <= (value - j) / (i - j) <= 1.0 + 1e-6)
        ]
        assert candidates, f"example {i}: labels are not the max with any partner"
        mixed_any |= bool(y_out[i].sum() > 1)
    assert mixed_any
    assert torch.all(y_out >= y)


def test_together_splices_time_and_unions_labels():
    n, w = 40, 30
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 3, w).contiguous()
    y = torch.nn.functional.one_hot(torch.arange(n) % 4, 4).float()
    cfg = BatchAugmentConfig(together_prob=1.0)
    out, y_out = apply_batch_augment(x, y, cfg, torch.Generator().manual_seed(0))
    for i in range(n):
        row = out[i, 0, 0]
        assert torch.equal(out[i], row.expand_as(out[i]))  # all frequency rows alike
        own = row == i
        k = int(own.sum())
        assert 1 <= k <= w - 1 and bool(own[:k].all())  # first k frames are its own
        partner = int(row[-1])
        assert partner != i and bool((row[k:] == partner).all())
        assert not torch.equal(y[partner], y[i])  # a partner of another label set
        assert torch.equal(y_out[i], torch.maximum(y[i], y[partner]))  # union


def test_together_probability_and_same_labels_left_alone():
    x, _ = batch(n=200)
    y = torch.nn.functional.one_hot(torch.arange(200) % 3, 3).float()
    out, y_out = apply_batch_augment(
        x, y, BatchAugmentConfig(together_prob=0.25), torch.Generator().manual_seed(0)
    )
    spliced = (out != x).any(dim=3).any(dim=2).any(dim=1)
    assert 0.15 < float(spliced.float().mean()) < 0.35
    assert torch.equal(y_out.sum(dim=1) > 1, spliced)
    # one label set for the whole batch: nobody has a partner
    same = torch.ones((10, 2))
    xs, _ = batch(n=10)
    out, y_out = apply_batch_augment(
        xs, same, BatchAugmentConfig(together_prob=1.0), torch.Generator().manual_seed(0)
    )
    assert torch.equal(out, xs) and torch.equal(y_out, same)


@pytest.mark.gpu
def test_batch_augment_on_cuda_with_a_cpu_generator():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    x, y = batch()
    cpu = apply_batch_augment(x, y, ALL_ON, torch.Generator().manual_seed(3))
    gpu = apply_batch_augment(x.cuda(), y.cuda(), ALL_ON, torch.Generator().manual_seed(3))
    assert gpu[0].device.type == "cuda"
    torch.testing.assert_close(gpu[0].cpu(), cpu[0])
    torch.testing.assert_close(gpu[1].cpu(), cpu[1])
