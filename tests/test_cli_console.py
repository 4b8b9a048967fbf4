"""What a person sees on the console of a CLI run (issue 13): the run's own lines, not Ray's
notes, unless ``-v`` is given. Each run is a fresh process that starts its own local Ray, as a
user's command does (in-process runs share the test session's Ray and never start one)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from caption_fixtures import tiny_bundle

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
