"""Augmentation: waveforms → more/other waveforms; spectrogram batches → perturbed batches.

Two levels, both pure functions driven by an explicit seeded generator (the global NumPy and
torch random states are never read or changed):

- **Waveform level** (dataset build, where audio exists; shards hold only spectrograms):
  ``augment_waveform`` (gain, white noise at a signal-to-noise ratio, time shift),
  ``overlapping_windows`` (the study's "overlap": 1-s windows with a hop below 1 s) and
  ``stitch_together`` (the study's "together": whole seconds of clips of different classes
  concatenated, with per-second labels, so the model sees transitions between sounds).
- **Batch level** (train loop, on model-ready tensors x (N, C, H, W) float32 with H = frequency
  rows and W = time frames, y (N, L) float32 multi-hot): ``apply_batch_augment`` with
  SpecAugment time/frequency masks, a circular time roll, mixup, and the "together" splice.

Every operation is switched off by its zero (or ``None``) setting; a config whose operations are
all off leaves the data unchanged. Configs serialise with ``to_dict``/``from_dict`` so a model
bundle can record the augmentation it was trained with (``ModelBundle.training``).
"""

from sound_captions.augment.batch import (
    BatchAugmentConfig,
    apply_batch_augment,
    mixup,
    roll_time,
    spec_augment,
    splice_together,
)
from sound_captions.augment.waveform import (
    WaveAugmentConfig,
    add_noise,
    augment_waveform,
    overlapping_windows,
    shift_samples,
    stitch_together,
    window_labels,
)

__all__ = [
    "BatchAugmentConfig", "WaveAugmentConfig", "add_noise", "apply_batch_augment", "augment_waveform", "mixup",
    "overlapping_windows", "roll_time", "shift_samples", "spec_augment", "splice_together", "stitch_together", "window_labels",
]
