"""Job configs map one-to-one onto CLI options (the Ray Jobs submission test is in tests/cluster)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sound_captions.cli import main as cli
from sound_captions.jobs import JOBS, JobConfigError, config_to_args, load_config

ROOT = Path(__file__).resolve().parents[1]


def test_keys_become_options_flags_and_positionals():
    args = config_to_args(
        "caption",
        {"inputs": ["a", "s3://b/c"], "model": "m.bundle", "out": "o", "force": True, "inference_actors": 2, "vocabulary": None, "num_cpus": 4},
    )
    assert args == ["--num-cpus", "4", "caption", "--model", "m.bundle", "--out", "o", "--force", "--inference-actors", "2", "a", "s3://b/c"]
    assert config_to_args("build_dataset", {"manifest": ["x.csv", "y.csv"], "include_descendants": False, "overwrite": False}) == [
        "dataset", "build", "--manifest", "x.csv", "--manifest", "y.csv", "--no-overwrite"
    ]
    # false turns an on/off option off (--in-memory/--streaming), and is simply left out for a plain flag
    assert config_to_args("train", {"in_memory": False, "data": "d"}) == ["train", "--streaming", "--data", "d"]
    with pytest.raises(JobConfigError):
        config_to_args("nope", {})


def test_smoke_test_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 10\nmodel: baseline\nsmoke_test:\n  epochs: 1\n")
    assert load_config(str(path))["epochs"] == 10
    assert load_config(str(path), smoke_test=True)["epochs"] == 1


@pytest.mark.parametrize("config", sorted((ROOT / "jobs" / "configs").glob("local-*.yaml")), ids=lambda p: p.name)
def test_every_example_config_is_accepted_by_the_cli(config):
    """Each example config parses into options the CLI knows (click rejects unknown ones)."""
    job = config.stem.removeprefix("local-")
    args = config_to_args(job, load_config(str(config)))
    command = cli
    words = JOBS[job]
    for word in words:
        command = command.commands[word]
    sub_args = args[args.index(words[-1]) + 1 :]
    command.make_context(" ".join(words), sub_args)  # raises on an unknown option


def test_job_script_prints_its_cli_args():
    out = subprocess.run(
        [sys.executable, str(ROOT / "jobs" / "train.py"), "--config", str(ROOT / "jobs" / "configs" / "local-train.yaml"), "--print-args", "--smoke-test"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    ).stdout
    assert out.split()[:1] == ["train"] and "--epochs 1" in out


def test_the_clean_job_gives_the_dataset_as_the_commands_argument():
    args = config_to_args("clean_dataset", {"data": "s3://bkt/ds", "out": "review/", "folds": 5, "audio": False, "apply": None})
    assert args == ["dataset", "clean", "--out", "review/", "--folds", "5", "--no-audio", "s3://bkt/ds"]

