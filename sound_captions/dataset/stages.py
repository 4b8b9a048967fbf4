"""The per-item stages of a dataset build, as pure functions over column batches.

Ray Data calls these through ``map_batches`` (see ``build.py``); they are plain functions so that
tests and a sequential loop (the benchmark's baseline) can call them directly.

Rows flowing between stages carry either a window of audio (``reason == ""``) or the failure of a
whole clip (``reason`` set, ``second == -1``), so every requested item reaches the writer exactly
once as shard rows or as a failure row. Each window row carries an ``augment`` tag (``original``
unless the build augments its train split, see ``augmentation.py``).
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

from sound_captions import reasons
from sound_captions.audio import DecodeError, decode_audio
from sound_captions.dataset.augmentation import (
    ORIGINAL,
    TOGETHER,
    BuildAugmentConfig,
    clip_versions,
    together_member,
    together_sequences,
)
from sound_captions.features import FeatureConfig, pin_torch_threads, spectrograms_where
from sound_captions.sources.requests import optional_seconds

REQUEST_COLUMNS = ("clip_id", "source", "start_s", "end_s", "labels", "split", "events")


LABEL_SEPARATOR = "|"


def join_labels(labels) -> str:
    """Labels travel between stages as one ``|``-joined string (mids never contain ``|``): Arrow
    conversion of ragged list columns in numpy batches is unreliable."""
    if isinstance(labels, str):
        return labels
    return LABEL_SEPARATOR.join(str(x) for x in (labels if labels is not None else []))


def split_labels(text) -> list[str]:
    if text is None:
        return []
    if not isinstance(text, str):
        return [str(x) for x in text]
    return [x for x in text.split(LABEL_SEPARATOR) if x]


def join_events(events) -> str:
    """Events ``(label, onset_ms, offset_ms)`` → one string for the stages (``mid@0@1500|…``);
    ``""``: the clip has no event times and every window carries the clip's labels."""
    return LABEL_SEPARATOR.join(f"{label}@{int(onset)}@{int(offset)}" for label, onset, offset in events)


def split_events(text) -> list[tuple[str, int, int]]:
    if not isinstance(text, str) or not text:
        return []
    out = []
    for part in text.split(LABEL_SEPARATOR):
        label, onset, offset = part.rsplit("@", 2)
        out.append((label, int(onset), int(offset)))
    return out


def second_labels(events: list[tuple[str, int, int]], start_s: float, min_overlap_s: float, order: list[str]) -> list[str]:
    """The per-second label contract: the labels of the window [start_s, start_s + 1) are those
    of the events that overlap it by at least ``min_overlap_s`` (times from the clip's start),
    in ``order``; a window that no event covers enough is a negative for the clip's classes."""
    on = set()
    for label, onset_ms, offset_ms in events:
        overlap = min(start_s + 1.0, offset_ms / 1000) - max(start_s, onset_ms / 1000)
        if overlap >= min_overlap_s - 1e-9:
            on.add(label)
    return [m for m in order if m in on] + sorted(on.difference(order))


def _empty_window_batch(cfg: FeatureConfig) -> dict[str, list]:
    return {name: [] for name in ("clip_id", "source", "second", "start_s", "labels", "split", "reason", "message", "augment", "window")}


def decode_windows(
    request: dict,
    cfg: FeatureConfig,
    *,
    media: str | None = None,
    offset_s: float | None = None,
    ffmpeg: str | None = None,
    augment: BuildAugmentConfig | None = None,
    min_overlap_s: float = 0.5,
) -> dict[str, np.ndarray]:
    """One clip request → its window rows, or one failure row.

    ``media`` is what to decode (default: the request's ``source``); ``offset_s`` is where the
    requested segment starts inside ``media`` (0 for a downloaded segment, the request's
    ``start_s`` for the full medium). ``augment`` applies to a request of the train split only
    (copies and overlapping windows, see :func:`~sound_captions.dataset.augmentation.clip_versions`);
    a row's ``second`` is the grid second its window starts in, ``start_s`` its exact start.
    A request with ``events`` labels each window by :func:`second_labels` (an augmented copy by
    its window's position in the shifted copy).
    """
    out = _empty_window_batch(cfg)
    start_s = optional_seconds(request.get("start_s"))
    end_s = optional_seconds(request.get("end_s"))
    media = media or request["source"]
    seek_s = start_s if offset_s is None else offset_s
    stop_s = None if end_s is None else (end_s - (start_s or 0.0) + (seek_s or 0.0))
    labels = split_labels(request.get("labels"))
    events = split_events(request.get("events"))

    def fail(reason: str, message: str) -> dict[str, np.ndarray]:
        return failure_batch(request, cfg, reason, message)

    try:
        samples = decode_audio(media, seek_s, stop_s, sample_rate_hz=cfg.sample_rate_hz, ffmpeg=ffmpeg)
    except DecodeError as exc:
        reason = reasons.UNAVAILABLE if exc.reason == reasons.NOT_FOUND else exc.reason
        return fail(reason, str(exc))
    except Exception as exc:  # an unexpected error loses this clip only, with its message
        return fail(reasons.OTHER, f"{type(exc).__name__}: {exc}")
    split = str(request.get("split", ""))
    versions = clip_versions(samples, str(request["clip_id"]), cfg, augment if split == "train" else None)
    if versions[0][0].shape[0] == 0:
        return fail(reasons.TOO_SHORT, f"{samples.size / cfg.sample_rate_hz:.3f} s of audio, less than half a window")
    # a whole medium whose events start past its end: the wrong subtitle or events file, or another frame rate
    late = [e for e in events if e[1] * cfg.sample_rate_hz >= samples.size * 1000] if end_s is None else []
    if late:
        label, onset_ms, _ = late[0]
        return fail(
            reasons.EVENTS_PAST_END,
            f"{len(late)} event(s) start after the medium's end ({samples.size / cfg.sample_rate_hz:.3f} s), "
            f"the first {label} at {onset_ms / 1000:.3f} s: is it the right subtitle or events file?",
        )
    base_s = start_s or 0.0
    for windows, starts, tags in versions:
        for window, start, tag in zip(windows, starts.tolist(), tags, strict=True):
            out["clip_id"].append(request["clip_id"])
            out["source"].append(request["source"])
            out["second"].append(start // cfg.window_samples)
            out["start_s"].append(base_s + start / cfg.sample_rate_hz)
            out["labels"].append(second_labels(events, start / cfg.sample_rate_hz, min_overlap_s, labels) if events else labels)
            out["split"].append(split)
            out["reason"].append("")
            out["message"].append("")
            out["augment"].append(tag)
            out["window"].append(window)
    return _finish(out, cfg)


def _finish(out: dict[str, list], cfg: FeatureConfig) -> dict[str, np.ndarray]:
    n = len(out["clip_id"])
    labels = np.asarray([join_labels(v) for v in out["labels"]], dtype=object)
    return {
        "clip_id": np.asarray(out["clip_id"], dtype=object),
        "source": np.asarray(out["source"], dtype=object),
        "second": np.asarray(out["second"], dtype=np.int32),
        "start_s": np.asarray(out["start_s"], dtype=np.float64),
        "labels": labels,
        "split": np.asarray(out["split"], dtype=object),
        "reason": np.asarray(out["reason"], dtype=object),
        "message": np.asarray(out["message"], dtype=object),
        "augment": np.asarray(out["augment"], dtype=object),
        "window": np.stack(out["window"]) if n else np.zeros((0, cfg.window_samples), np.float32),
    }


def concat_batches(batches: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    keys = batches[0].keys()
    return {k: np.concatenate([b[k] for b in batches]) for k in keys}


def add_spectrograms(batch: dict[str, np.ndarray], cfg: FeatureConfig) -> dict[str, np.ndarray]:
    """Window rows → the same rows with ``spectrogram`` (n, H, W, C) float16 and no ``window``."""
    windows = batch.pop("window")
    batch["spectrogram"] = spectrograms_where(windows, [r == "" for r in batch["reason"]], cfg)
    return batch


def decode_stage(
    batch: dict[str, np.ndarray], feature_config: dict, ffmpeg: str | None = None, augment: dict | None = None,
    min_overlap_s: float = 0.5,
) -> dict[str, np.ndarray]:
    """Ray Data stage: request rows (with ``media``/``fetch_reason`` after a fetch stage) → window
    rows; ``augment``: a :class:`BuildAugmentConfig` as a dict, for the train split."""
    cfg = FeatureConfig.from_dict(feature_config)
    aug = BuildAugmentConfig.from_dict(augment) if augment else None
    parts = []
    for i in range(len(batch["clip_id"])):
        request = {k: batch[k][i] for k in batch}
        if request.get("fetch_reason"):
            parts.append(failure_batch(request, cfg, request["fetch_reason"], request.get("fetch_message", "")))
            continue
        offset = optional_seconds(request["media_offset_s"]) if "media_offset_s" in request else None
        data = request.get("media_bytes")
        if data is not None and len(data):
            # the segment's bytes came with the row (it may have been downloaded on another node)
            suffix = os.path.splitext(str(request.get("media") or ""))[1] or ".media"
            with tempfile.TemporaryDirectory(prefix="sc-decode-") as tmp:
                local = os.path.join(tmp, "segment" + suffix)
                with open(local, "wb") as f:
                    f.write(bytes(data))
                parts.append(decode_windows(request, cfg, media=local, offset_s=offset, ffmpeg=ffmpeg, augment=aug, min_overlap_s=min_overlap_s))
            continue
        parts.append(decode_windows(request, cfg, media=request.get("media") or None, offset_s=offset, ffmpeg=ffmpeg, augment=aug, min_overlap_s=min_overlap_s))
    return concat_batches(parts)


def failure_batch(request: dict, cfg: FeatureConfig, reason: str, message: str) -> dict[str, np.ndarray]:
    """The one row that records why a whole clip could not be used."""
    out = _empty_window_batch(cfg)
    start_s = optional_seconds(request.get("start_s"))
    for key, value in (
        ("clip_id", request["clip_id"]), ("source", request["source"]), ("second", -1),
        ("start_s", start_s if start_s is not None else 0.0),
        ("labels", split_labels(request.get("labels"))),
        ("split", request.get("split", "")), ("reason", reason), ("message", message), ("augment", ""),
    ):
        out[key].append(value)
    out["window"].append(np.zeros(cfg.window_samples, np.float32))
    return _finish(out, cfg)


def feature_stage(batch: dict[str, np.ndarray], feature_config: dict, threads: int = 1) -> dict[str, np.ndarray]:
    """Ray Data stage: window rows → spectrogram rows, torch threads pinned to the task's CPUs."""
    pin_torch_threads(threads)
    return add_spectrograms(batch, FeatureConfig.from_dict(feature_config))


MAX_TOGETHER_MEMBERS = 8  # runs of one clip in the "together" pool, so a long subtitled film does not dominate it


def _label_runs(labels: list[str]) -> list[tuple[int, int]]:
    """(start, end) of each run of equal labels: a clip with event times is several members of
    the "together" pool, one per stretch of seconds with one label set (none: a negative)."""
    starts = [0] + [k for k in range(1, len(labels)) if labels[k] != labels[k - 1]]
    return list(zip(starts, starts[1:] + [len(labels)], strict=True))


def together_stage(batch: dict[str, np.ndarray], feature_config: dict, augment: dict) -> dict[str, np.ndarray]:
    """Ray Data stage: window rows → the same rows plus stitched "together" sequences.

    The pool is the train clips whose ``original`` windows are in the batch (their audio is
    those 1-s windows put back in order); see
    :func:`~sound_captions.dataset.augmentation.together_sequences`. Sequence rows have
    ``clip_id`` ``together-<hash>``, ``source`` ``together:<id>+<id>…`` (``together_member``), ``second`` and
    ``start_s`` on the sequence's own timeline, per-second labels, split ``train`` and tag
    ``together``.
    """
    cfg = FeatureConfig.from_dict(feature_config)
    aug = BuildAugmentConfig.from_dict(augment)
    if aug.together <= 0 or not len(batch["clip_id"]):
        return batch
    seconds: dict[str, dict[int, int]] = {}
    for i in range(len(batch["clip_id"])):
        if batch["reason"][i] == "" and batch["split"][i] == "train" and batch["augment"][i] == ORIGINAL:
            seconds.setdefault(str(batch["clip_id"][i]), {})[int(batch["second"][i])] = i
    pool = {}
    for clip_id, rows in seconds.items():
        order = [rows[k] for k in sorted(rows)]
        runs = _label_runs([batch["labels"][j] for j in order])
        longest = sorted(sorted(range(len(runs)), key=lambda n: runs[n][0] - runs[n][1])[:MAX_TOGETHER_MEMBERS])
        for n in longest:  # per-second labels: each run of one label set is a member (a film: its longest few)
            a, b = runs[n]
            key = together_member(clip_id, None if len(runs) == 1 else n)
            pool[key] = (batch["window"][order[a:b]].reshape(-1), tuple(split_labels(batch["labels"][order[a]])))
    sequences = together_sequences(pool, cfg, aug)
    if not sequences:
        return batch
    out = _empty_window_batch(cfg)
    for clip_id, source, windows, labels in sequences:
        for second, (window, second_labels) in enumerate(zip(windows, labels, strict=True)):
            for key, value in (
                ("clip_id", clip_id), ("source", source), ("second", second),
                ("start_s", second * cfg.window_samples / cfg.sample_rate_hz), ("labels", list(second_labels)),
                ("split", "train"), ("reason", ""), ("message", ""), ("augment", TOGETHER), ("window", window),
            ):  # fmt: skip
                out[key].append(value)
    return concat_batches([batch, _finish(out, cfg)])
