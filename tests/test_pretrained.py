"""A PANNs Cnn14 checkpoint as a bundle: parity with the reference implementation (PANNs' own
``panns_inference`` model code with ``torchlibrosa``'s front-end, random weights saved in the
checkpoint format), an end-to-end caption run, threshold tuning, and wrong files refused."""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import webvtt
from click.testing import CliRunner

from sound_captions.audio import decode_audio
from sound_captions.bundle import load_bundle, save_bundle
from sound_captions.caption.pipeline import CaptionOptions, caption_library
from sound_captions.caption.postprocess import PostprocessConfig, scores_to_cues
from sound_captions.caption.vtt import cues_to_webvtt
from sound_captions.cli import main
from sound_captions.dataset import shards
from sound_captions.features import FeatureConfig, compute_features, frame_windows
from sound_captions.metrics import tune_thresholds_pooled
from sound_captions.models import build_model
from sound_captions.ontology import Ontology
from sound_captions.pretrained import (
    CheckpointError,
    import_panns,
    read_checkpoint,
    tune_bundle_thresholds,
)
from sound_captions.testing.media import KIND_LABELS, make_media

CFG = FeatureConfig.panns(16_000)


def _panns_models():
    """``panns_inference.models`` without running the package's ``__init__`` (its config.py
    downloads a label CSV with wget at import)."""
    if "panns_inference.models" in sys.modules:
        return sys.modules["panns_inference.models"]
    spec = importlib.util.find_spec("panns_inference")
    package = types.ModuleType("panns_inference")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules.setdefault("panns_inference", package)
    return importlib.import_module("panns_inference.models")


@pytest.fixture(scope="module", autouse=True)
def two_torch_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def reference():
    """PANNs' Cnn14 at 16 kHz with random weights and batch-norm statistics of real-ish audio
    (so that its scores spread over (0, 1) instead of saturating), in eval mode."""
    torch.manual_seed(0)
    model = _panns_models().Cnn14(sample_rate=16000, window_size=512, hop_size=160, mel_bins=64, fmin=50, fmax=8000, classes_num=527)
    rng = np.random.default_rng(0)
    t = np.arange(16_000) / 16_000
    audio = np.stack([
        a * np.sin(2 * np.pi * f * t) + n * rng.standard_normal(t.size)
        for a, f, n in zip(rng.uniform(0, 0.5, 16), rng.uniform(100, 6000, 16), rng.uniform(0, 0.2, 16), strict=True)
    ]).astype(np.float32)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # cumulative average over the passes below
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.as_tensor(audio))
    model.eval()
    with torch.no_grad():  # a bias spread so that classes differ, as a trained head's do
        model.fc_audioset.bias.copy_(torch.linspace(-2, 2, 527))
    return model


@pytest.fixture(scope="module")
def checkpoint(reference, tmp_path_factory) -> Path:
    """Saved as PANNs' training script saves it: iteration, model, and the sampler's numpy state."""
    path = tmp_path_factory.mktemp("panns") / "Cnn14_16k_random.pth"
    torch.save({"iteration": 1000, "model": reference.state_dict(), "sampler": {"indexes": np.arange(10), "pointer": 3}}, path)
    return path


def _reference_scores(model, audio: np.ndarray) -> np.ndarray:
    return _reference_scores_windows(model, frame_windows(audio, CFG))


@pytest.mark.parametrize("rate", [8_000, 16_000, 32_000])
def test_front_end_equals_torchlibrosa(rate):
    """kind="panns" computes PANNs' log-mel, quiet bins included (a pure tone's side lobes)."""
    from torchlibrosa.stft import LogmelFilterBank, Spectrogram

    cfg = FeatureConfig.preset(f"panns-{rate // 1000}k")
    assert cfg.shape == (64, 101, 1) and cfg.hop_samples == rate // 100
    f_min, f_max = cfg.mel_range_hz
    stft = Spectrogram(n_fft=cfg.n_fft, hop_length=cfg.hop_samples, win_length=cfg.n_fft, window="hann", center=True, pad_mode="reflect")
    logmel = LogmelFilterBank(sr=rate, n_fft=cfg.n_fft, n_mels=64, fmin=f_min, fmax=f_max, ref=1.0, amin=1e-10, top_db=None)
    t = np.arange(rate) / rate
    x = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.05 * np.random.default_rng(0).standard_normal(rate), np.zeros(rate)]).astype(np.float32)
    with torch.no_grad():
        want = logmel(stft(torch.as_tensor(x)))[:, 0].transpose(1, 2).numpy()
    got = np.stack([compute_features(row, cfg)[0, ..., 0] for row in x])
    # dB, down to -100: float32 rounding of the side lobes grows with depth (an FFT's: ~0.1 dB)
    np.testing.assert_allclose(got, want, atol=1e-3, rtol=2e-4)
    with pytest.raises(ValueError, match="panns"):
        FeatureConfig(kind="panns", sample_rate_hz=22_050, window_samples=22_050, height=64, width=101, normalize=False)
    with pytest.raises(ValueError, match="width 101"):
        FeatureConfig(kind="panns", height=64, width=128, normalize=False)


def test_import_keeps_labels_front_end_and_weights(checkpoint):
    bundle = import_panns(str(checkpoint))
    assert bundle.architecture == "panns_cnn14" and bundle.feature_config == CFG
    assert bundle.labels == list(Ontology.load().labelled_mids) and len(bundle.labels) == 527
    assert set(bundle.thresholds.values()) == {0.3}
    assert bundle.caption_text["/m/0bt9lr"] == "[dog barking]"  # the packaged vocabulary
    assert len(bundle.caption_text) == 512 and len(bundle.training["captions_derived"]) == 414
    assert "/m/09x0r" not in bundle.caption_text  # Speech: a transcript's job, never a sound caption
    assert len(bundle.training["checkpoint_sha256"]) == 64
    state = torch.load(checkpoint, weights_only=False)["model"]
    for key, value in bundle.state_dict.items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)
    assert not any(k.startswith(("spectrogram_extractor", "logmel_extractor")) for k in bundle.state_dict)


def test_features_and_model_equal_the_reference_per_second(reference, checkpoint, tmp_path):
    bundle = import_panns(str(checkpoint))
    model = bundle.build_model()
    rng = np.random.default_rng(3)
    t = np.arange(5 * 16_000) / 16_000
    audio = (0.3 * np.sin(2 * np.pi * 440 * t) * (t < 2) + 0.05 * rng.standard_normal(t.size) * (t >= 3)).astype(np.float32)
    want = _reference_scores(reference, audio)
    with torch.no_grad():
        x = torch.as_tensor(compute_features(audio, CFG)).permute(0, 3, 1, 2)
        got = torch.sigmoid(model(x)).numpy()
    assert want.shape == got.shape == (5, 527)
    assert want.std() > 0.05 and np.ptp(want, axis=0).max() > 0.05  # spread: not a saturated model
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


@pytest.mark.ray
def test_imported_bundle_captions_a_video_with_the_references_scores(ray_session, reference, checkpoint, tmp_path):
    out = tmp_path / "panns.bundle"
    result = CliRunner().invoke(main, ["bundle", "import-panns", str(checkpoint), "--out", str(out), "--threshold", "0.5"])
    assert result.exit_code == 0, result.output
    assert "527 classes" in result.output
    media = tmp_path / "in"
    make_media(media / "scene.mp4", [("beep", 2), ("music", 2), ("noise", 2), ("silence", 1)], seed=5)
    run = caption_library([str(media)], CaptionOptions(out=str(tmp_path / "out"), model=str(out), force=True))
    assert run.counts()["captioned"] == 1, run.results
    table = pq.read_table(tmp_path / "out" / "scene.scores.parquet")
    bundle = load_bundle(str(out))
    got = table.select(bundle.labels).to_pandas().to_numpy()
    want = _reference_scores(reference, decode_audio(str(media / "scene.mp4"), sample_rate_hz=16_000))
    assert got.shape == want.shape == (7, 527)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    # what the viewer reads is the post-processing of the reference's scores
    vtt = webvtt.from_string((tmp_path / "out" / "scene.vtt").read_text())
    cues, _ = scores_to_cues(want, bundle.labels, bundle.thresholds, bundle.caption_text, PostprocessConfig())
    assert cues, "the reference scores some class above 0.5: the video gets captions"
    assert [(c.start, c.end, c.text) for c in vtt] == [(c.start, c.end, c.text) for c in cues_to_webvtt(cues)]


def test_thresholds_tuned_on_a_labelled_dataset(reference, checkpoint, tmp_path):
    """`bundle tune-thresholds` tunes the labels a dataset annotates, from the reference's scores."""
    rng = np.random.default_rng(7)
    rows = {"clip_id": [], "source": [], "second": [], "start_s": [], "labels": [], "split": [], "spectrogram": []}
    audio_rows = []
    for clip in range(12):
        kind = ("beep", "noise", "music")[clip % 3]
        path = make_media(tmp_path / "clips" / f"c{clip}.wav", [(kind, 3)], seed=int(rng.integers(1 << 30)))
        audio = decode_audio(str(path), sample_rate_hz=16_000)
        feats = compute_features(audio, CFG)
        audio_rows.append(frame_windows(audio, CFG))
        for k in range(len(feats)):
            rows["clip_id"].append(f"c{clip}")
            rows["source"].append(str(path))
            rows["second"].append(k)
            rows["start_s"].append(float(k))
            rows["labels"].append([KIND_LABELS[kind]])
            rows["split"].append("valid")
            rows["spectrogram"].append(feats[k])
    rows["spectrogram"] = np.stack(rows["spectrogram"])
    data = tmp_path / "dataset"
    shards.write_table(shards.shard_table(rows, CFG), str(data / "shards/part-0000.parquet"))
    vocabulary = {KIND_LABELS[k]: Ontology.load().name(KIND_LABELS[k]) for k in ("beep", "noise", "music")}
    shards.write_dataset_info(str(data), shards.DatasetInfo(feature_config=CFG, vocabulary=vocabulary, shards=["shards/part-0000.parquet"]))

    save_bundle(import_panns(str(checkpoint)), str(tmp_path / "in.bundle"))
    before = (tmp_path / "in.bundle").read_bytes()
    result = CliRunner().invoke(main, ["bundle", "tune-thresholds", str(tmp_path / "in.bundle"), "--data", str(data), "--out", str(tmp_path / "tuned.bundle"), "--min-positives", "3"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "in.bundle").read_bytes() == before
    tuned = load_bundle(str(tmp_path / "tuned.bundle"))

    mids = [m for m in tuned.labels if m in vocabulary]
    columns = [tuned.labels.index(m) for m in mids]
    scores = np.concatenate([_reference_scores_windows(reference, w) for w in audio_rows])[:, columns]
    y = np.array([[m in labels for m in mids] for labels in rows["labels"]])
    want = tune_thresholds_pooled(y, scores, mids, target_precision=0.9, default=0.3, min_positives=3).thresholds
    for mid in mids:
        assert tuned.thresholds[mid] == pytest.approx(want[mid], abs=1e-4)
    assert any(tuned.thresholds[m] != 0.3 for m in mids)
    assert all(tuned.thresholds[m] == 0.3 for m in tuned.labels if m not in vocabulary)
    assert set(tuned.training["threshold_tuning"]["tuned"]) == set(mids)
    tuned_again, _ = tune_bundle_thresholds(tuned, str(data), split="valid", min_positives=3)
    assert tuned_again.thresholds == tuned.thresholds


def _reference_scores_windows(model, windows: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.as_tensor(windows))["clipwise_output"].numpy()


# ------------------------------------------------------------------------------ wrong files


def _one_line_exit_2(result, *words):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_wrong_checkpoints_fail_with_one_line(checkpoint, reference, tmp_path):
    runner = CliRunner()

    def run(path):
        return runner.invoke(main, ["bundle", "import-panns", str(path), "--out", str(tmp_path / "x.bundle")])

    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    _one_line_exit_2(run(truncated), "truncated.pth", "not a readable PyTorch checkpoint")

    other = tmp_path / "compact.pth"  # another architecture: one of our own models
    torch.save(build_model("compact", 3).state_dict(), other)
    _one_line_exit_2(run(other), "compact.pth", "logmel_extractor.melW")

    state = reference.state_dict()
    cnn10 = {k: v for k, v in state.items() if not k.startswith(("conv_block5", "conv_block6"))}  # Cnn10-like
    torch.save({"model": cnn10}, tmp_path / "cnn10.pth")
    _one_line_exit_2(run(tmp_path / "cnn10.pth"), "not a Cnn14 checkpoint", "missing", "conv_block5")

    _one_line_exit_2(run(tmp_path / "missing.pth"), "missing.pth")
    assert not (tmp_path / "x.bundle").exists()


def test_wrong_heads_and_front_ends_are_refused(reference, tmp_path, monkeypatch):
    """The checks behind the one line, on state dicts in memory (no more 300 MB files)."""
    import sound_captions.pretrained as pretrained

    state = reference.state_dict()

    def importing(bad: dict):
        monkeypatch.setattr(pretrained, "read_checkpoint", lambda uri, raw=None: bad)
        monkeypatch.setattr(pretrained.storage, "read_bytes", lambda uri: b"")
        return pytest.raises(CheckpointError)

    narrow = {**state, "fc_audioset.weight": state["fc_audioset.weight"][:10], "fc_audioset.bias": state["fc_audioset.bias"][:10]}
    with importing(narrow) as info:
        import_panns("narrow.pth")
    assert "10 outputs" in str(info.value) and "527" in str(info.value)
    with importing({**state, "logmel_extractor.melW": state["logmel_extractor.melW"].roll(3, dims=1)}) as info:
        import_panns("mel.pth")
    assert "mel filters differ" in str(info.value)
    with importing({**state, "spectrogram_extractor.stft.conv_real.weight": -state["spectrogram_extractor.stft.conv_real.weight"]}) as info:
        import_panns("stft.pth")
    assert "not PANNs' Hann-windowed 512-point STFT" in str(info.value)
    wide = {**state, "conv_block1.conv1.weight": torch.zeros(64, 2, 3, 3)}
    with importing(wide) as info:
        import_panns("wide.pth")
    assert "shapes differ" in str(info.value) and "conv_block1.conv1.weight" in str(info.value)
    nan = {**state, "fc1.weight": torch.full_like(state["fc1.weight"], float("nan"))}
    with importing(nan) as info:
        import_panns("nan.pth")
    assert "non-finite" in str(info.value)


class _Payload:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_a_checkpoint_with_pickled_code_is_refused(reference, tmp_path, capsys):
    path = tmp_path / "evil.pth"
    torch.save({"model": reference.state_dict(), "extra": _Payload()}, path)
    with pytest.raises(CheckpointError, match="refusing"):
        read_checkpoint(str(path))
    assert "pickled code ran" not in capsys.readouterr().out
