"""slurm/ray-node.sh finds and stops the processes of one Ray cluster, and only those.

Stand-ins for Ray's processes: Python sleepers whose command line names a temp dir the way
gcs_server/raylet do (`--log_dir=<temp dir>/session_.../logs`), and a child that renamed
itself the way `ray::` workers do (its command line no longer names anything).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cluster_helpers import RAY_NODE, cluster_pids

PARENT = """
import subprocess, sys, time
# a child whose command line does not name the temp dir (like a `ray::IDLE` worker)
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
time.sleep(120)
"""


def _spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", PARENT, *args], start_new_session=True)


def _children(pid: int) -> list[int]:
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True
    ).stdout
    return [int(p) for p in out.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


@pytest.fixture()
def temp_dir():
    return Path("/tmp") / f"ray-nodetest-{secrets.token_hex(3)}"


def test_stop_takes_the_cluster_and_its_children_and_nothing_else(temp_dir):
    ours = _spawn(f"--log_dir={temp_dir}/session_1/logs")
    ours_too = _spawn(f"--temp-dir={temp_dir}")
    # Another job's cluster whose temp dir merely starts with ours, and one that names ours only
    # as part of a longer word: both must survive.
    neighbour = _spawn(f"--log_dir={temp_dir}0/session_1/logs")
    lookalike = _spawn(f"--note=x{temp_dir}")
    everyone = [ours, ours_too, neighbour, lookalike]
    try:
        deadline = time.monotonic() + 30
        while not _children(ours.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        (worker,) = _children(ours.pid)
        found = {int(line.split()[0]) for line in cluster_pids(temp_dir)}
        assert {ours.pid, ours_too.pid, worker} <= found
        assert not found & {neighbour.pid, lookalike.pid}

        env = {**os.environ, "RAY_TMPDIR": str(temp_dir), "RAY_STOP_GRACE_S": "3"}
        subprocess.run([str(RAY_NODE), "stop"], env=env, check=True, timeout=60)
        for p in (ours, ours_too):
            p.wait(timeout=10)
        assert not _alive(worker)
        assert neighbour.poll() is None and lookalike.poll() is None
        assert cluster_pids(temp_dir) == []
    finally:
        for p in everyone:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def test_stop_escalates_to_sigkill(temp_dir):
    stubborn = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)",
            f"--log_dir={temp_dir}/s",
        ],
        start_new_session=True,
    )
    try:
        time.sleep(0.5)
        env = {**os.environ, "RAY_TMPDIR": str(temp_dir), "RAY_STOP_GRACE_S": "3"}
        started = time.monotonic()
        done = subprocess.run(
            [str(RAY_NODE), "stop"], env=env, capture_output=True, text=True, timeout=60
        )
        assert stubborn.wait(timeout=10) == -signal.SIGKILL
        assert time.monotonic() - started < 15
        assert "SIGKILL" in done.stderr
    finally:
        if stubborn.poll() is None:
            stubborn.kill()
            stubborn.wait()


def test_a_relative_temp_dir_is_refused():
    done = subprocess.run(
        [str(RAY_NODE), "stop"],
        env={**os.environ, "RAY_TMPDIR": "tmp/ray"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "absolute" in done.stderr
