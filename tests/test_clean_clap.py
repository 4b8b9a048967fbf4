"""dataset clean --clap: zero-shot scores from a CLAP model loaded from a local file.

The model is msclap's real 2023 architecture (HTSAT + a GPT-2 text encoder, one layer of the
real width), randomly initialised and saved as msclap saves its weights: these tests check the
plumbing, shapes and errors, not quality. msclap pins numpy < 2, so the checks run in the venv
scripts/test.sh makes for the clap extra (.venv-clap), each as a subprocess; the main suite's
venv, like a default install, has no msclap (and its error is checked here too).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from sound_captions.cli import main
from sound_captions.dataset.build import BuildOptions, build_dataset
from sound_captions.features import FeatureConfig
from sound_captions.sources.manifest import read_manifest, write_manifest
from sound_captions.testing.media import make_media

ROOT = Path(__file__).resolve().parents[1]
CLAP_PYTHON = Path(os.environ.get("SOUND_CAPTIONS_CLAP_PYTHON", ROOT / ".venv-clap" / "bin" / "python"))
needs_clap_venv = pytest.mark.skipif(not CLAP_PYTHON.exists(), reason=f"no clap venv at {CLAP_PYTHON} (scripts/test.sh makes it)")
NAMES = {"beep": "Beep, bleep", "music": "Music", "noise": "White noise"}


def run_clap(script: str, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """``script`` in the clap venv, with its own local Ray and a Hugging Face cache that is empty."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "PYTHONPATH", "VIRTUAL_ENV"))}
    env["HF_HOME"] = env["HF_HUB_CACHE"] = str(Path(args[0]) / "hf-empty") if args else "/nonexistent-hf"
    env["HF_HUB_OFFLINE"] = "1"
    return subprocess.run([str(CLAP_PYTHON), "-c", script, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


@pytest.fixture(scope="module")
def random_clap(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("clap")
    proc = run_clap("import sys; from sound_captions.testing.clap import make_random_clap; make_random_clap(sys.argv[1])", str(folder))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return folder / "clap.pth", folder / "text"


_PARITY = r"""
import json, re, sys, types
import numpy as np, torch
from msclap.CLAPWrapper import CLAPWrapper
from sound_captions.clean.clap import load_clap, score_clips

weights, text, clip = sys.argv[2:5]
clap = load_clap(weights, text)
prompts = ["this is a sound of dog", "this is a sound of music, rock and roll"]
rate = clap.sample_rate
samples = (0.3 * np.sin(2 * np.pi * 440 * np.arange(3 * rate) / rate)).astype(np.float32)

# msclap's own path, on the same model: its tokenizing, its repeat-padding, its similarity
wrapper = CLAPWrapper.__new__(CLAPWrapper)
wrapper.clap, wrapper.tokenizer, wrapper.use_cuda = clap.model, clap.tokenizer, False
wrapper.args = types.SimpleNamespace(**clap.args)
wrapper.token_keys = ["input_ids", "attention_mask"]
wrapper.np_str_obj_array_pattern = re.compile(r"[SaUO]")
wrapper.read_audio = lambda path, resample=False: (torch.from_numpy(samples)[None], rate)
theirs_text = wrapper.get_text_embeddings(prompts)
theirs_audio = wrapper.get_audio_embeddings(["generated"], resample=False)
ours_text = clap.text_embeddings(prompts)
ours_audio = clap.audio_embeddings([samples])

clips = [types.SimpleNamespace(clip_id="real", source=clip, start_s=0.0, n_seconds=3),
         types.SimpleNamespace(clip_id="gone", source=clip + ".missing", start_s=0.0, n_seconds=3)]
scored = score_clips(clap, clips, ["/m/a", "/m/b", "/m/c"], {"/m/a": "Beep, bleep", "/m/b": "Music", "/m/c": "White noise"})
real = scored["real"]
print(json.dumps({
    "text": float((theirs_text - ours_text).abs().max()), "audio": float((theirs_audio - ours_audio).abs().max()),
    "similarity": float(np.abs(wrapper.compute_similarity(theirs_audio, theirs_text).detach().numpy() - clap.similarity(ours_audio, ours_text)).max()),
    "dim": list(ours_audio.shape), "clip": real.probability.tolist(), "seconds": real.per_second.tolist(),
    "gone": [scored["gone"].probability is None, scored["gone"].problem],
}))
"""


@needs_clap_venv
@pytest.mark.slow
def test_clap_scores_like_msclap_itself_per_clip_and_per_second(random_clap, tmp_path):
    weights, text = random_clap
    clip = tmp_path / "beep.wav"
    make_media(clip, [("beep", 3)], seed=1)
    proc = run_clap(_PARITY, str(tmp_path), str(weights), str(text), str(clip))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["text"] < 1e-5 and out["audio"] < 1e-5 and out["similarity"] < 1e-4, out
    assert out["dim"] == [1, 1024]
    assert len(out["clip"]) == 3 and abs(sum(out["clip"]) - 1) < 1e-5
    assert len(out["seconds"]) == 3 and all(len(s) == 3 and abs(sum(s) - 1) < 1e-5 for s in out["seconds"])
    assert out["gone"][0] and out["gone"][1]  # an unreadable source is recorded, not raised


_ERRORS = r"""
import json, sys
import torch
from click.testing import CliRunner
from sound_captions.cli import main

tmp, weights, text = sys.argv[1:4]
open(f"{tmp}/corrupt.pth", "wb").write(b"\x00not a torch file" * 100)
torch.save({"model": {"linear.weight": torch.zeros(3, 3)}}, f"{tmp}/other.pth")
cases = {
    "missing": ["--clap", f"{tmp}/nothing.pth", "--clap-text", text],
    "corrupt": ["--clap", f"{tmp}/corrupt.pth", "--clap-text", text],
    "other": ["--clap", f"{tmp}/other.pth", "--clap-text", text],
    "version": ["--clap", weights, "--clap-text", text, "--clap-version", "2022"],
    "no_text": ["--clap", weights],
    "text_alone": ["--clap-text", text],
}
out = {}
for name, args in cases.items():
    result = CliRunner().invoke(main, ["dataset", "clean", f"{tmp}/no-dataset", "--out", f"{tmp}/review", *args])
    out[name] = [result.exit_code, result.output.strip().splitlines()]
print(json.dumps(out))
"""


@needs_clap_venv
@pytest.mark.slow
def test_a_missing_corrupt_or_mismatched_clap_file_is_one_line_before_any_training(random_clap, tmp_path):
    weights, text = random_clap
    proc = run_clap(_ERRORS, str(tmp_path), str(weights), str(text))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    expect = {
        "missing": "does not exist",
        "corrupt": "cannot be read as a torch file",
        "other": "is not a CLAP 2023 model",
        "version": "is not a CLAP 2022 model",
        "no_text": "not in this machine's Hugging Face cache; pass --clap-text DIR",
        "text_alone": "--clap-text goes with --clap FILE",
    }
    for name, fragment in expect.items():
        code, lines = out[name]
        assert code == 2, (name, lines)
        assert fragment in lines[-1], (name, lines)
    assert not (tmp_path / "review").exists()  # nothing trained, nothing written


def test_without_the_clap_extra_the_command_says_how_to_install_it(tmp_path):
    # the main suite's venv is a default install plus test tools: no msclap
    probe = subprocess.run([sys.executable, "-c", "import msclap"], capture_output=True)
    assert probe.returncode != 0, "msclap is installed in the main venv; it belongs in .venv-clap only"
    (tmp_path / "clap.pth").write_bytes(b"x")
    result = CliRunner().invoke(main, ["dataset", "clean", str(tmp_path), "--out", str(tmp_path / "r"), "--clap", str(tmp_path / "clap.pth")])
    assert result.exit_code == 1
    assert "pip install 'sound-captions[clap]'" in result.output.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def small_dataset(ray_session, tmp_path_factory) -> Path:
    """Three kinds × 6 clips of 3 s and 2 silent negatives."""
    root = tmp_path_factory.mktemp("clap-corpus")
    rows, seed = [], 900
    for kind, name in NAMES.items():
        for i in range(6):
            seed += 1
            make_media(root / "clips" / f"{kind}{i}.wav", [(kind, 3)], seed=seed)
            rows.append((f"clips/{kind}{i}.wav", None, None, [name]))
    for i in range(2):
        make_media(root / "clips" / f"silence{i}.wav", [("silence", 3)], seed=i)
        rows.append((f"clips/silence{i}.wav", None, None, []))
    write_manifest(rows, str(root / "manifest.csv"))
    requests, failures = read_manifest(str(root / "manifest.csv"))
    data = root / "dataset"
    opts = BuildOptions(feature_config=FeatureConfig.preset("64x64x1"), split_fractions=(0.7, 0.15, 0.15), seed=2, target_shard_mb=0.1)
    build_dataset(requests, str(data), opts, source_failures=failures)
    return data


_CLEAN = r"""
import sys
from sound_captions.cli import main
sys.argv = ["sound-captions", "--num-cpus", "2", "dataset", "clean", *sys.argv[2:]]
main()
"""


@needs_clap_venv
@pytest.mark.slow
@pytest.mark.ray
def test_dataset_clean_with_clap_shows_zero_shot_scores_beside_the_folds(small_dataset, random_clap, tmp_path):
    weights, text = random_clap
    review = tmp_path / "review"
    args = [str(small_dataset), "--out", str(review), "--folds", "2", "--epochs", "1", "--no-audio", "--page-clips", "6", "--clap", str(weights), "--clap-text", str(text)]
    proc = run_clap(_CLEAN, str(tmp_path), *args)
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    rows = list(csv.DictReader((review / "suspicions.csv").read_text(encoding="utf-8").splitlines()))
    assert len(rows) == 20
    for row in rows:
        assert not row["clap_problem"], row
        assert set(row["clap_top"].split(";")[0].rsplit(" ", 1)[0:1]) <= set(NAMES.values())
        if row["labels"]:
            assert 0.0 < float(row["clap_given"]) < 1.0
            label, rank = row["clap_ranks"].split(":")
            assert label == row["labels"] and 1 <= int(rank) <= 3
        else:
            assert row["clap_given"] == "" and row["clap_ranks"] == ""
    seconds = list(csv.DictReader((review / "seconds.csv").read_text(encoding="utf-8").splitlines()))
    assert seconds and all(0.0 <= float(s["clap"]) <= 1.0 for s in seconds)
    summary = json.loads((review / "clean.json").read_text())
    assert summary["clap"]["version"] == "2023" and summary["clap"]["scored"] == 20 and len(summary["clap"]["sha256"]) == 64
    page = (review / "review.html").read_text(encoding="utf-8")
    assert page.count('class="clap"') == 6 and "(CLAP)" in page and "Zero-shot scores: CLAP 2023 (clap.pth)" in page
