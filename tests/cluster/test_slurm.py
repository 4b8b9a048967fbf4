"""slurm/ray-cluster.sbatch and slurm/nightly-caption.sbatch on a real (single-node) Slurm.

Start one with `.ci/start-slurm.sh` (root). Skipped when `sinfo` does not answer, except in CI
with SOUND_CAPTIONS_SLURM=1 (set by scripts/test.sh after starting Slurm), where that fails.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from cluster_helpers import ROOT, caption_config, cluster_pids, dataset_config, write_config

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

VENV = Path(sys.executable).parent.parent


@pytest.fixture(scope="module", autouse=True)
def slurm_is_up():
    problem = None
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        problem = "no Slurm client commands"
    else:
        states = subprocess.run(
            ["sinfo", "--noheader", "--format=%t"], capture_output=True, text=True, timeout=30
        )
        if states.returncode != 0:
            problem = f"sinfo failed: {states.stderr.strip()}"
        elif not re.search(r"^(idle|mix|alloc)", states.stdout, re.M):
            problem = f"no usable Slurm node: {states.stdout.split()}"
    if problem:
        if os.environ.get("CI") and os.environ.get("SOUND_CAPTIONS_SLURM") == "1":
            pytest.fail(f"Slurm should be running (SOUND_CAPTIONS_SLURM=1): {problem}")
        pytest.skip(f"{problem}; start one with .ci/start-slurm.sh")


def _sbatch(script: str, log: Path, env: dict[str, str], *options: str) -> str:
    full_env = {
        **os.environ,
        "PROJECT_DIR": str(ROOT),
        "VENV": str(VENV),
        "RAY_CPUS_PER_NODE": "4",
        **env,
    }
    full_env.pop("RAY_ADDRESS", None)
    cmd = [
        "sbatch",
        "--parsable",
        f"--output={log}",
        "--time=15",
        *options,
        str(ROOT / "slurm" / script),
    ]
    done = subprocess.run(
        cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.strip().split(";")[0]


def _job(job_id: str) -> dict[str, str]:
    out = subprocess.run(
        ["scontrol", "--oneliner", "show", "job", job_id],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    return dict(re.findall(r"(\w+)=(\S*)", out))


def _wait(job_id: str, timeout_s: float = 600) -> dict[str, str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = _job(job_id)
        if info.get("JobState") not in ("PENDING", "RUNNING", "COMPLETING", "CONFIGURING"):
            return info
        time.sleep(1)
    subprocess.run(["scancel", job_id], check=False)
    pytest.fail(f"Slurm job {job_id} not finished after {timeout_s}s")


def _no_leftovers(job_id: str, *driver_patterns: str) -> list[str]:
    left = cluster_pids(f"/tmp/ray-{job_id}")
    for pattern in driver_patterns:
        found = subprocess.run(
            ["pgrep", "-af", pattern], capture_output=True, text=True
        ).stdout.strip()
        left += [line for line in found.splitlines() if "pgrep" not in line]
    return left


def test_dataset_build_and_caption_on_a_ray_cluster_in_slurm(demo_inputs, tmp_path):
    dataset, captions = tmp_path / "dataset", tmp_path / "captions"
    build = write_config(tmp_path / "build.yaml", dataset_config(demo_inputs, dataset))
    caption = write_config(tmp_path / "caption.yaml", caption_config(demo_inputs, captions))
    log = tmp_path / "job.out"
    job_id = _sbatch(
        "ray-cluster.sbatch", log, {"JOBS": f"build_dataset:{build} caption:{caption}"}
    )
    info = _wait(job_id)
    text = log.read_text()
    assert (info["JobState"], info["ExitCode"]) == ("COMPLETED", "0:0"), text[-4000:]
    assert "all 1 Ray node(s) up" in text
    assert (
        "jobs/build_dataset.py exited with status 0" in text
        and "jobs/caption.py exited with status 0" in text
    )
    # The drivers joined the job's cluster rather than starting a Ray of their own.
    assert text.count("Connecting to existing Ray cluster") == 2, text[-4000:]

    info = json.loads((dataset / "dataset.json").read_text())
    assert sum(pq.read_metadata(dataset / s).num_rows for s in info["shards"]) > 0
    for stem in demo_inputs.videos:
        assert (captions / f"{stem}.vtt").read_text().startswith("WEBVTT")
    report = pq.read_table(captions / "_report" / "report.parquet").to_pylist()
    assert {r["status"] for r in report} == {"captioned"}

    assert _no_leftovers(job_id) == []
    assert not Path(f"/tmp/ray-{job_id}").exists()


def test_scancel_stops_ray_and_the_driver(demo_inputs, tmp_path):
    config = write_config(
        tmp_path / "build.yaml", dataset_config(demo_inputs, tmp_path / "dataset")
    )
    log = tmp_path / "job.out"
    job_id = _sbatch("ray-cluster.sbatch", log, {"JOB": "build_dataset", "CONFIG": str(config)})
    try:
        deadline = time.monotonic() + 300
        while "running: python jobs/build_dataset.py" not in (
            log.read_text() if log.exists() else ""
        ):
            assert _job(job_id).get("JobState") in ("PENDING", "RUNNING", "CONFIGURING"), (
                log.read_text()[-3000:]
            )
            assert time.monotonic() < deadline, "the driver did not start"
            time.sleep(0.2)
        assert cluster_pids(f"/tmp/ray-{job_id}"), "Ray should be running now"
    finally:
        subprocess.run(["scancel", job_id], check=True)
    info = _wait(job_id, timeout_s=120)
    assert info["JobState"] == "CANCELLED", log.read_text()[-3000:]
    # Slurm considers the job gone once its steps have ended; nothing of it may remain.
    assert _no_leftovers(job_id, f"jobs/build_dataset.py --config {config}") == [], log.read_text()[
        -3000:
    ]
    text = log.read_text()
    assert "SIGTERM" in text and "exit status 143" in text, text[-3000:]
    # The batch script's own cleanup ran to its end within KillWait.
    assert not Path(f"/tmp/ray-{job_id}").exists()


def test_nightly_run_schedules_the_next_night_even_when_it_fails(tmp_path):
    # Tonight fails at once (its config is missing): the next night must be queued all the same.
    log = tmp_path / "nightly.out"
    env = {"CONFIG": str(tmp_path / "missing.yaml"), "NIGHTLY_AT": "03:17"}
    name = f"nightly-test-{os.getpid()}"
    job_id = _sbatch("nightly-caption.sbatch", log, env, f"--job-name={name}")
    try:
        info = _wait(job_id)
        text = log.read_text()
        assert (info["JobState"], info["ExitCode"]) == ("FAILED", "1:0"), text[-3000:]
        assert "no such config" in text
        queued = subprocess.run(
            ["squeue", "--noheader", f"--name={name}", "--states=PENDING", "--format=%i %S %E"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert len(queued) == 3, f"expected one queued next run: {queued}\n{text[-3000:]}"
        next_id, begin, dependency = queued
        tomorrow = dt.date.today() + dt.timedelta(days=1)
        assert begin == f"{tomorrow.isoformat()}T03:17:00"
        # Slurm clears a singleton dependency once no other job of the name is left, which may
        # already be so (tonight's job has just ended): the next run's own script carries it.
        assert dependency.startswith("singleton") or dependency == "(null)", dependency
        script = subprocess.run(["scontrol", "write", "batch_script", next_id, "-"], capture_output=True, text=True, check=True).stdout
        assert "\n#SBATCH --dependency=singleton\n" in script, script[:2000]
        assert f"next run: job {next_id}" in text
        assert _no_leftovers(job_id) == []
    finally:
        subprocess.run(["scancel", f"--name={name}"], check=False)
