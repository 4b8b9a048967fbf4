"""Helpers of the cluster tests: job configs for the demo inputs, ports, and the Ray processes of
one cluster (found and stopped through its temp dir, never with a machine-wide `ray stop`)."""

from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
RAY_NODE = ROOT / "slurm" / "ray-node.sh"
LABELS = {"/m/02fs_r": "Beep, bleep", "/m/04rlf": "Music", "/m/0chx_": "White noise"}


@dataclass(frozen=True)
class DemoInputs:
    manifest: Path  # the demo corpus' manifest CSV (clips next to it)
    library: Path  # videos to caption: lecture/intro.mp4, news.mp4
    bundle: Path  # model bundle for those labels
    videos: tuple[str, ...]  # library-relative stems


def write_config(path: Path, config: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def dataset_config(demo: DemoInputs, out: Path) -> dict:
    return {
        "manifest": [str(demo.manifest)],
        "out": str(out),
        "features": "128x128x1",
        "seed": 0,
        "shard_mb": 16,
    }


def caption_config(demo: DemoInputs, out: Path) -> dict:
    return {
        "inputs": [str(demo.library)],
        "model": str(demo.bundle),
        "out": str(out),
        "inference_actors": 1,
        "batch_size": 64,
    }


def cluster_pids(temp_dir: Path | str) -> list[str]:
    """'PID command' lines of the processes of the Ray cluster whose temp dir is ``temp_dir``."""
    env = {**os.environ, "RAY_TMPDIR": str(temp_dir)}
    out = subprocess.run(
        [str(RAY_NODE), "pids"], env=env, capture_output=True, text=True, check=True
    ).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def stop_cluster(temp_dir: Path | str) -> None:
    """Stop exactly the Ray processes of one cluster (`ray stop` would stop every Ray on the machine)."""
    subprocess.run(
        [str(RAY_NODE), "stop"],
        env={**os.environ, "RAY_TMPDIR": str(temp_dir)},
        check=False,
        timeout=60,
    )


def free_port_block(n: int = 10) -> int:
    """First of ``n`` consecutive free ports on 127.0.0.1 (Ray needs a block for its services)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + n >= 65535:
            continue
        try:
            socks = []
            for port in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no block of free ports")


_SUBMIT_AND_WAIT = """
import json, sys, time
from ray.job_submission import JobSubmissionClient
address, entrypoint, runtime_env, timeout_s = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), float(sys.argv[4])
client = JobSubmissionClient(address)
job_id = client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env)
deadline = time.monotonic() + timeout_s
while not client.get_job_status(job_id).is_terminal() and time.monotonic() < deadline:
    time.sleep(1)
if not client.get_job_status(job_id).is_terminal():
    client.stop_job(job_id)
print(json.dumps({"job_id": job_id, "status": str(client.get_job_status(job_id).value), "logs": client.get_job_logs(job_id)}))
"""


def submit_and_wait(
    address: str, token: str, entrypoint: str, runtime_env: dict, timeout_s: float
) -> dict:
    """Submit a job through the Ray Jobs API and wait for it: {"job_id", "status", "logs"}.

    The client runs in a process of its own, with the cluster's token in its environment: Ray
    reads the authentication mode once per process, and this test process may hold a Ray session
    of its own (the shared ``ray_session`` fixture) that must not be touched.
    """
    import json
    import sys

    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    env.pop("RAY_ADDRESS", None)
    args = [
        sys.executable,
        "-c",
        _SUBMIT_AND_WAIT,
        address,
        entrypoint,
        json.dumps(runtime_env),
        str(timeout_s),
    ]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout_s + 120)
    if done.returncode != 0:
        raise RuntimeError(f"job client failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
