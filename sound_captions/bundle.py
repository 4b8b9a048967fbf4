"""The model bundle: one file holding everything a caption run needs (ARCHITECTURE.md).

Stored with ``torch.save`` as a dict of plain types and tensors and read back with
``torch.load(weights_only=True)``, so loading a bundle never runs pickled code.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import UTC, datetime

import torch

from sound_captions import __version__, storage
from sound_captions.features import FeatureConfig

BUNDLE_FORMAT = "sound-captions/model-bundle/1"


class BundleError(ValueError):
    """A file is not a model bundle, or one of another format version."""


@dataclass
class ModelBundle:
    architecture: str
    hparams: dict
    state_dict: dict[str, torch.Tensor]
    labels: list[str]  # mids, in output order
    label_names: dict[str, str]  # mid → AudioSet display name
    caption_text: dict[str, str]  # mid → "[dog barking]"; labels absent here are not captioned
    thresholds: dict[str, float]  # mid → probability threshold
    feature_config: FeatureConfig
    dataset_digest: str = ""
    metrics: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)  # epochs, seed, augmentation, ...
    # Energy gate: seconds whose RMS is below this (dBFS) get all-zero scores at caption time, so
    # digital silence and quiet room tone are never captioned. None: no gate (older bundles).
    gate_dbfs: float | None = None
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    tool_version: str = __version__

    @property
    def feature_hash(self) -> str:
        return self.feature_config.hash

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the model input."""
        h, w, c = self.feature_config.shape
        return (c, h, w)

    @property
    def context(self) -> int:
        """Seconds of audio context on each side the model uses (0: each second alone)."""
        from sound_captions.models import context_seconds

        return context_seconds(self.architecture, self.hparams)

    @property
    def model_input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one model input: ``input_shape`` widened to the context's windows."""
        c, h, w = self.input_shape
        return (c, h, (2 * self.context + 1) * w)

    def build_model(self) -> torch.nn.Module:
        """The architecture with these weights, in eval mode."""
        from sound_captions.models import build_model

        hparams = {k: v for k, v in self.hparams.items() if k != "pretrained"}
        model = build_model(self.architecture, len(self.labels), self.input_shape, **hparams)
        model.load_state_dict(self.state_dict)
        model.eval()
        return model

    def digest(self) -> str:
        """A short digest identifying this bundle (weights + labels + thresholds + features)."""
        import hashlib

        h = hashlib.sha256()
        h.update(self.architecture.encode())
        h.update(repr(sorted(self.hparams.items())).encode())
        h.update(repr(self.labels).encode())
        h.update(repr(sorted(self.thresholds.items())).encode())
        h.update(repr(sorted(self.caption_text.items())).encode())
        h.update(self.feature_hash.encode())
        if self.gate_dbfs is not None:  # absent from the digest of older bundles
            h.update(f"gate={self.gate_dbfs!r}".encode())
        for name in sorted(self.state_dict):
            h.update(name.encode())
            h.update(self.state_dict[name].detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    def to_dict(self) -> dict:
        return {
            "format": BUNDLE_FORMAT,
            "tool_version": self.tool_version,
            "created": self.created,
            "architecture": self.architecture,
            "hparams": dict(self.hparams),
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict.items()},
            "labels": list(self.labels),
            "label_names": dict(self.label_names),
            "caption_text": dict(self.caption_text),
            "thresholds": {k: float(v) for k, v in self.thresholds.items()},
            "feature_config": self.feature_config.to_dict(),
            "feature_hash": self.feature_hash,
            "dataset_digest": self.dataset_digest,
            "metrics": self.metrics,
            "training": self.training,
            "gate_dbfs": self.gate_dbfs,
        }

    @classmethod
    def from_dict(cls, data: dict) -> ModelBundle:
        if data.get("format") != BUNDLE_FORMAT:
            raise BundleError(f"not a model bundle of format {BUNDLE_FORMAT} (found {data.get('format')!r})")
        cfg = FeatureConfig.from_dict(data["feature_config"])
        cfg.check(data["feature_hash"], "the bundle's feature hash")
        return cls(
            architecture=data["architecture"],
            hparams=dict(data["hparams"]),
            state_dict=dict(data["state_dict"]),
            labels=list(data["labels"]),
            label_names=dict(data["label_names"]),
            caption_text=dict(data["caption_text"]),
            thresholds={k: float(v) for k, v in data["thresholds"].items()},
            feature_config=cfg,
            dataset_digest=data.get("dataset_digest", ""),
            metrics=data.get("metrics", {}),
            training=data.get("training", {}),
            created=data.get("created", ""),
            tool_version=data.get("tool_version", ""),
            gate_dbfs=None if data.get("gate_dbfs") is None else float(data["gate_dbfs"]),
        )


def save_bundle(bundle: ModelBundle, uri: str) -> None:
    """Write the bundle atomically to ``uri`` (local or s3://)."""
    buffer = io.BytesIO()
    torch.save(bundle.to_dict(), buffer)
    storage.write_bytes(uri, buffer.getvalue())


def load_bundle(uri: str) -> ModelBundle:
    try:
        data = torch.load(io.BytesIO(storage.read_bytes(uri)), map_location="cpu", weights_only=True)
    except storage.StorageError:
        raise
    except Exception as exc:
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
        raise BundleError(f"{uri}: not a readable model bundle ({type(exc).__name__}: {first[:160]})") from exc
    if not isinstance(data, dict):
        raise BundleError(f"{uri}: not a model bundle")
    return ModelBundle.from_dict(data)
