"""What a person sees on the console of a CLI run (issue 13): the run's own lines, not Ray's
notes, unless ``-v`` is given. Each run is a fresh process that starts its own local Ray, as a
user's command does (in-process runs share the test session's Ray and never start one)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from caption_fixtures import tiny_bundle

from sound_captions.cli import LOCAL_RAY_ENV
from sound_captions.testing.media import make_media

pytestmark = [pytest.mark.ray]

RAY_NOTES = ("Progress bars disabled", "execution finished", "Started a local Ray instance", "Token authentication")


def _caption(tmp_path, model, *flags: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    out = tmp_path / ("out" + "".join(flags))
    cmd = [sys.executable, "-m", "sound_captions.cli", *flags, "--num-cpus", "2", "caption", str(tmp_path / "lib"), "--model", str(model), "--out", str(out)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)


def test_ray_notes_only_with_verbose(tmp_path, tmp_path_factory):
    model = tiny_bundle(tmp_path_factory.mktemp("bundle"))
    make_media(tmp_path / "lib" / "clip.mp4", [("beep", 3), ("music", 3)], seed=3)

    quiet = _caption(tmp_path, model)
    assert quiet.returncode == 0, quiet.stderr
    assert f"captioned {tmp_path / 'lib' / 'clip.mp4'}" in quiet.stderr
    assert not [note for note in RAY_NOTES if note in quiet.stderr], quiet.stderr

    verbose = _caption(tmp_path, model, "-v")
    assert verbose.returncode == 0, verbose.stderr
    assert "Started a local Ray instance" in verbose.stderr and "execution finished" in verbose.stderr, verbose.stderr


def test_the_local_ray_reads_parquet_footers_with_few_actors():
    """The CLI's local Ray (a fresh process, as a user's command) hands LOCAL_RAY_ENV to its
    workers, where Ray Data's footer reader sizes its actor pool from it (32 by default, each a
    new process per read)."""
    code = (
        "import json, ray\n"
        "from sound_captions.cli import init_ray\n"
        "init_ray(4)\n"
        "@ray.remote\n"
        "def pool_size():\n"
        "    from ray.data._internal.datasource_v2.formats.parquet import footer_file_indexer\n"
        "    return footer_file_indexer._DEFAULT_NUM_ACTORS\n"
        "print(json.dumps(ray.get(pool_size.remote())))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_DATA_PARQUET_FOOTER_NUM_ACTORS")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.strip().splitlines()[-1]) == int(LOCAL_RAY_ENV["RAY_DATA_PARQUET_FOOTER_NUM_ACTORS"]) < 32, proc.stdout
