"""The fine-tune path of an accessibility team (issue 12), end to end on generated media: their
captioned videos (their SDH subtitles beside them) → ``dataset build --subtitles`` → ``train
--init-from BUNDLE`` → ``caption`` the rest → ``evaluate-run`` against the held-out videos'
subtitles. And the
weights a fine-tune starts from: shared labels keep their output rows, new ones start fresh."""

from __future__ import annotations

import json

import pytest
import torch
from caption_fixtures import tiny_bundle
from click.testing import CliRunner

from sound_captions.bundle import load_bundle
from sound_captions.cli import main
from sound_captions.features import FeatureConfig, FeatureConfigMismatchError
from sound_captions.models import build_model
from sound_captions.testing.media import KIND_LABELS, make_media
from sound_captions.train.init import InitFromError, initial_weights

BEEP, MUSIC, NOISE = KIND_LABELS["beep"], KIND_LABELS["music"], KIND_LABELS["noise"]
APPLAUSE = "/m/028ght"


def _head(bundle, n_labels):
    fresh = build_model(bundle.architecture, n_labels, bundle.input_shape, **bundle.hparams)
    wider = build_model(bundle.architecture, n_labels + 1, bundle.input_shape, **bundle.hparams).state_dict()
    return fresh, {k for k, v in fresh.state_dict().items() if v.shape != wider[k].shape}


def test_shared_labels_keep_their_rows_and_new_labels_start_fresh(tmp_path_factory):
    uri = str(tiny_bundle(tmp_path_factory.mktemp("bundle")))
    source = load_bundle(uri)
    labels = [MUSIC, APPLAUSE]  # music is shared, applause is new, beep and noise are dropped
    fresh, head = _head(source, len(labels))
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    state, record = initial_weights(uri, labels, source.feature_config, fresh, head)
    assert head and record["labels_shared"] == 1 and record["labels_new"] == 1 and record["digest"] == source.digest()
    music = source.labels.index(MUSIC)
    for key, value in state.items():
        if key in head:
            assert torch.equal(value[0], source.state_dict[key][music])
            assert torch.equal(value[1], before[key][1])  # applause: as initialised
        else:
            assert torch.equal(value, source.state_dict[key]), key
    with pytest.raises(FeatureConfigMismatchError):
        initial_weights(uri, labels, FeatureConfig.preset("128x128x1"), fresh, head)
    other = build_model("baseline", len(labels), source.input_shape)
    with pytest.raises(InitFromError, match="another architecture|shape"):
        initial_weights(uri, labels, source.feature_config, other, {"fc2.weight", "fc2.bias"})


@pytest.mark.ray
def test_captioned_videos_to_a_fine_tuned_model_judged_on_held_out_videos(ray_session, tmp_path, tmp_path_factory):
    base = tiny_bundle(tmp_path_factory.mktemp("bundle"))
    library = tmp_path / "library"
    train_media = {
        "captioned/a.mp4": [("beep", 3), ("silence", 1), ("music", 4)],
        "captioned/b.mp4": [("music", 3), ("silence", 2), ("beep", 3)],
        "captioned/c.mp4": [("beep", 2), ("music", 3), ("silence", 1)],
        "captioned/d.mp4": [("silence", 1), ("music", 2), ("beep", 4)],
    }
    held_out = {"rest/e.mp4": [("music", 4), ("silence", 2), ("beep", 3)], "rest/f.mp4": [("beep", 3), ("music", 3)]}

    def captioned(media: dict) -> None:
        """Each video with a viewer's SDH subtitles beside it: dialogue, [beeping], ♪ ♪."""
        for index, (rel, segments) in enumerate(media.items()):
            make_media(library / rel, segments, seed=40 + index + len(media))
            cues, t = [], 0
            for kind, seconds in segments:
                text = {"beep": "[beeping]\nWhat is that noise?", "music": "♪ ♪", "silence": "- Quiet now."}[kind]
                cues.append(f"{len(cues) + 1}\n{_srt_time(t)} --> {_srt_time(t + seconds)}\n{text}\n")
                t += seconds
            (library / rel).with_suffix(".srt").write_text("\n".join(cues))

    captioned(train_media)
    captioned(held_out)
    runner = CliRunner()

    def run(*args):
        result = runner.invoke(main, list(args))
        assert result.exit_code == 0, result.output
        return result.output

    built = run("dataset", "build", "--subtitles", str(library / "captioned"), "--out", str(tmp_path / "ds"), "--split", "0.5,0.5,0", "--no-progress")
    run("train", "--data", str(tmp_path / "ds"), "--out", str(tmp_path / "run"), "--init-from", str(base), "--epochs", "2", "--learning-rate", "0.0003", "--patience", "0")
    assert "4 of 4 media labelled" in built and "map to no class" not in built
    tuned = load_bundle(str(tmp_path / "run" / "model.bundle"))
    assert tuned.architecture == load_bundle(str(base)).architecture and sorted(tuned.labels) == sorted([BEEP, MUSIC])
    assert tuned.training["init_from"]["labels_shared"] == 2 and tuned.training["init_from"]["labels_new"] == 0

    run("caption", str(library / "rest"), "--model", str(tmp_path / "run" / "model.bundle"), "--out", str(tmp_path / "captions"))
    summary = run("evaluate-run", str(tmp_path / "captions"), "--truth", str(library / "rest"), "--model", str(tmp_path / "run" / "model.bundle"), "--out", str(tmp_path / "eval"))
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert len(report["videos"]) == 2 and report["n_seconds"] == 15
    assert report["overall"]["f_measure"] >= 0.8, summary


def _srt_time(seconds: int) -> str:
    return f"00:{seconds // 60:02d}:{seconds % 60:02d},000"
