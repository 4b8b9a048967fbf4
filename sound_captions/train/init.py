"""``train --init-from BUNDLE``: start from a bundle's weights (fine-tuning a model on a
library's own captioned media) instead of a random initialisation.

The bundle decides the architecture and its hyper-parameters, and its features must be the
dataset's. Every weight is copied; the output layer's rows are copied for the labels the bundle
and the dataset share (matched by mid), and the rows of the dataset's new labels keep their
fresh initialisation. Labels of the bundle the dataset lacks are dropped.
"""

from __future__ import annotations

import torch

from sound_captions.bundle import BundleError, ModelBundle, load_bundle
from sound_captions.features import FeatureConfig


class InitFromError(BundleError):
    """A bundle whose weights cannot start this training run (the message says why)."""


def initial_weights(
    uri: str, labels: list[str], feature_config: FeatureConfig, model: torch.nn.Module, head_keys: set[str],
    *, source: ModelBundle | None = None,
) -> tuple[dict[str, torch.Tensor], dict]:
    """``model``'s state dict filled from the bundle at ``uri`` (``source``: that bundle, already
    read) → (state, record for the bundle). ``head_keys``: the weights with one row per label."""
    source = source or load_bundle(uri)
    feature_config.check(source.feature_hash, f"--init-from bundle {uri}")
    rows = {m: i for i, m in enumerate(source.labels)}
    shared = [(j, rows[m]) for j, m in enumerate(labels) if m in rows]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for key, target in state.items():
        weights = source.state_dict.get(key)
        if weights is None:
            raise InitFromError(f"{uri}: the bundle has no weights {key!r} (another architecture?)")
        if key in head_keys and weights.shape[1:] == target.shape[1:] and weights.shape[0] == len(source.labels):
            for j, i in shared:  # one row per label, matched by mid
                target[j] = weights[i]
        elif weights.shape == target.shape:
            target.copy_(weights)
        else:
            raise InitFromError(f"{uri}: weights {key!r} have shape {tuple(weights.shape)}, the model needs {tuple(target.shape)}")
    record = {
        "uri": uri, "digest": source.digest(), "architecture": source.architecture,
        "labels_shared": len(shared), "labels_new": len(labels) - len(shared),
    }  # fmt: skip
    return state, record


def architecture_of(source: ModelBundle) -> tuple[str, dict]:
    """The architecture and hyper-parameters a run starting from ``source`` trains."""
    return source.architecture, {k: v for k, v in source.hparams.items() if k != "pretrained"}
