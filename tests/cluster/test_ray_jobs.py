"""The jobs/ entry points, submitted through the Ray Jobs API to a Ray cluster of their own.

The cluster is started with `ray start --head` (dashboard on 127.0.0.1, ports from a free block,
its own temp dir and auth token) and is not the test session's Ray: the session's `ray.init()`
never sees its address, and only the JobSubmissionClient talks to it. At the end it is stopped
through its temp dir (slurm/ray-node.sh stop): a bare `ray stop` would also stop every other Ray
on this machine, the test session's included.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from cluster_helpers import (
    ROOT,
    caption_config,
    cluster_pids,
    dataset_config,
    free_port_block,
    stop_cluster,
    submit_and_wait,
    write_config,
)

pytestmark = [pytest.mark.ray, pytest.mark.slow]

JOB_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def jobs_cluster():
    """(dashboard address, token, temp dir) of a fresh single-node cluster from `ray start --head`."""
    temp_dir = (
        Path("/tmp") / f"ray-jobs-test-{secrets.token_hex(4)}"
    )  # short: unix socket paths < 108 bytes
    port = free_port_block(10)
    token = secrets.token_hex(32)
    # As with an activated virtualenv: the drivers' `python` is this interpreter.
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
        "PATH": bin_dir + os.pathsep + os.environ["PATH"],
    }
    env.pop("RAY_ADDRESS", None)
    ray = str(Path(bin_dir) / "ray")
    cmd = [
        ray, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", f"--ray-client-server-port={port + 1}",
        "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={port + 2}",
        f"--node-manager-port={port + 3}", f"--object-manager-port={port + 4}", f"--dashboard-agent-listen-port={port + 5}",
        f"--dashboard-agent-grpc-port={port + 6}", f"--metrics-export-port={port + 7}", f"--runtime-env-agent-port={port + 8}",
        "--num-cpus=4", "--object-store-memory=500000000", f"--temp-dir={temp_dir}", "--disable-usage-stats",
    ]  # fmt: skip
    started = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    if started.returncode != 0 and "timed out during startup" in started.stdout + started.stderr:
        # a loaded 2-core CI machine sometimes starves the GCS past Ray's own startup wait: retry once
        stop_cluster(temp_dir)
        started = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield f"http://127.0.0.1:{port + 2}", token, temp_dir
    finally:
        stop_cluster(temp_dir)
        leftovers = cluster_pids(temp_dir)
        subprocess.run(["rm", "-rf", str(temp_dir)], check=False)
        assert not leftovers, f"Ray processes of the test cluster survived: {leftovers}"


def _run_job(cluster, entrypoint: str) -> tuple[str, str]:
    """Submit ``entrypoint`` with the checkout as working dir; wait; return (status, logs)."""
    address, token, _ = cluster
    runtime_env = {
        "working_dir": str(ROOT),
        "excludes": ["tests/", "docs/", "infra/", "artifacts/", "demo-work/", "*.out"],
    }
    result = submit_and_wait(address, token, entrypoint, runtime_env, JOB_TIMEOUT_S)
    return result["status"], result["logs"]


def test_build_dataset_job_writes_a_dataset(jobs_cluster, demo_inputs, tmp_path):
    temp_dir = jobs_cluster[2]
    out = tmp_path / "dataset"
    config = write_config(tmp_path / "build.yaml", dataset_config(demo_inputs, out))
    status, logs = _run_job(jobs_cluster, f"python jobs/build_dataset.py --config {config}")
    assert status == "SUCCEEDED", logs[-3000:]
    # It ran on the cluster it was submitted to, not on a local Ray of its own.
    assert "Connecting to existing Ray cluster" in logs, logs[-3000:]
    info = json.loads((out / "dataset.json").read_text())
    assert set(info["vocabulary"]) == {"/m/02fs_r", "/m/04rlf", "/m/0chx_"}
    rows = sum(pq.read_metadata(out / shard).num_rows for shard in info["shards"])
    assert rows > 0
    assert cluster_pids(temp_dir), "the cluster should outlive its jobs"


def test_caption_job_writes_captions_and_a_report(jobs_cluster, demo_inputs, tmp_path):
    out = tmp_path / "captions"
    config = write_config(tmp_path / "caption.yaml", caption_config(demo_inputs, out))
    status, logs = _run_job(jobs_cluster, f"python jobs/caption.py --config {config}")
    assert status == "SUCCEEDED", logs[-3000:]
    for stem in demo_inputs.videos:
        assert (out / f"{stem}.vtt").read_text().startswith("WEBVTT")
        scores = pq.read_table(out / f"{stem}.scores.parquet")
        assert scores.num_rows > 0 and "second" in scores.column_names
    report = pq.read_table(out / "_report" / "report.parquet").to_pylist()
    assert sorted(r["status"] for r in report) == ["captioned"] * len(demo_inputs.videos)


def test_a_failing_job_is_reported_as_failed(jobs_cluster, demo_inputs, tmp_path):
    config = caption_config(demo_inputs, tmp_path / "o")
    config["no_such_option"] = 1  # the CLI refuses it: the driver exits non-zero
    status, logs = _run_job(
        jobs_cluster,
        f"python jobs/caption.py --config {write_config(tmp_path / 'bad.yaml', config)}",
    )
    assert status == "FAILED", logs[-3000:]
    assert "no-such-option" in logs
    assert not (tmp_path / "o").exists()
