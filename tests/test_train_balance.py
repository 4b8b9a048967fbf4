"""Class-imbalance handling: the BCE ``pos_weight`` comes from the training split's counts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sound_captions.dataset import shards
from sound_captions.features import FeatureConfig
from sound_captions.train.data import label_matrix, label_pos_weights


def _info(
    train_windows: int, positives: dict[str, int], valid_positives: dict[str, int]
) -> shards.DatasetInfo:
    labels = {mid: {"clips": 1, "windows": n} for mid, n in positives.items()}
    data = shards.DatasetInfo(
        feature_config=FeatureConfig(),
        vocabulary={mid: mid.strip("/") for mid in positives},
        shards=["shards/part-0.parquet"],
        counts={
            "train": {"clips": 10, "windows": train_windows, "labels": labels},
            "valid": {
                "clips": 2,
                "windows": 50,
                "labels": {m: {"clips": 1, "windows": n} for m, n in valid_positives.items()},
            },
        },
    ).to_dict()
    # Through dataset.json's own format, as train() reads it.
    return shards.DatasetInfo.from_dict(json.loads(json.dumps(data)))


def test_pos_weight_is_negatives_over_positives_per_label_in_vocabulary_order():
    info = _info(
        1000, {"/m/common": 500, "/m/rare": 40, "/m/rarest": 1, "/m/absent": 0}, {"/m/rare": 50}
    )
    weights = label_pos_weights(info)
    assert info.labels == ["/m/common", "/m/rare", "/m/rarest", "/m/absent"]
    # 500/500 → 1; 960/40 → 24; 999/1 → clipped at 50; no positives → treated as one, clipped at 50.
    assert weights == pytest.approx([1.0, 24.0, 50.0, 50.0])
    # Only the training split counts: the valid split's positives change nothing.
    assert (
        label_pos_weights(
            _info(1000, {"/m/common": 500, "/m/rare": 40, "/m/rarest": 1, "/m/absent": 0}, {})
        )
        == weights
    )


def test_pos_weight_never_down_weights_a_majority_label():
    # A label on 90 % of the windows would get 0.11; the weight is clipped at 1 (no down-weighting).
    assert label_pos_weights(_info(100, {"/m/everywhere": 90, "/m/half": 50}, {})) == pytest.approx(
        [1.0, 1.0]
    )


def test_pos_weight_balances_the_loss_of_positives_and_negatives():
    """With the weight, a constant prediction's gradient is zero at p = 0.5 for a rare label:
    positives and negatives pull with equal total force."""
    import torch

    info = _info(100, {"/m/rare": 10}, {})
    y = torch.tensor(label_matrix([["/m/rare"]] * 10 + [[]] * 90, info.labels))
    logits = torch.zeros_like(y, requires_grad=True)
    loss = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(label_pos_weights(info)))(logits, y)
    loss.backward()
    assert float(logits.grad.sum()) == pytest.approx(0.0, abs=1e-6)
    unweighted = torch.zeros_like(y, requires_grad=True)
    torch.nn.BCEWithLogitsLoss()(unweighted, y).backward()
    assert float(unweighted.grad.sum()) > 0.1  # pushed towards "never": the imbalance at work
    assert np.isfinite(label_pos_weights(_info(0, {"/m/x": 0}, {}))).all()
