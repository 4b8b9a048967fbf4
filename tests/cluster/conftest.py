"""Inputs for the cluster tests: the demo corpus (a small one), a short video library and a model
bundle.

The bundle is an untrained "compact" model with the demo's three labels: the cluster tests check
that the jobs run where they are sent and write what they promise, not caption quality (the
end-to-end test in tests/test_end_to_end.py does that).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cluster_helpers import LABELS, DemoInputs


@pytest.fixture(scope="session")
def demo_inputs(tmp_path_factory) -> DemoInputs:
    import torch

    from sound_captions.bundle import ModelBundle, save_bundle
    from sound_captions.demo import DemoConfig, make_corpus
    from sound_captions.features import FeatureConfig
    from sound_captions.models import build_model
    from sound_captions.testing.media import make_media

    root = tmp_path_factory.mktemp("demo")
    manifest = Path(
        make_corpus(
            str(root / "corpus"),
            DemoConfig(workdir=str(root), clips_per_kind=2, negatives=1, clip_seconds=3),
        )
    )
    library = root / "library"
    videos = {
        "lecture/intro": [("beep", 3), ("silence", 2), ("music", 3)],
        "news": [("noise", 3), ("beep", 2)],
    }
    for i, (stem, segments) in enumerate(videos.items()):
        make_media(library / f"{stem}.mp4", segments, seed=100 + i)
    torch.manual_seed(0)
    model = build_model("compact", len(LABELS), (1, 128, 128))
    bundle = root / "model.bundle"
    save_bundle(
        ModelBundle(
            architecture="compact",
            hparams={},
            state_dict=model.state_dict(),
            labels=list(LABELS),
            label_names=dict(LABELS),
            caption_text={"/m/02fs_r": "[beeping]", "/m/04rlf": "[music]", "/m/0chx_": "[static]"},
            thresholds=dict.fromkeys(LABELS, 0.5),
            feature_config=FeatureConfig(),
            dataset_digest="cluster-test",
            metrics={},
        ),
        str(bundle),
    )
    return DemoInputs(manifest=manifest, library=library, bundle=bundle, videos=tuple(videos))
