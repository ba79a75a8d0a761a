"""Signals during start-up: a SIGTERM before every worker reported ready stops cleanly with exit
0 and says so; a worker that dies while starting is reported with what killed it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
STARTING = "no keys file"  # each worker logs this at the start of its start-up


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test started; whatever is left of them is killed after it."""
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            for child in psutil.Process(process.pid).children(recursive=True):
                child.kill()
            process.kill()
            process.wait(timeout=10)


def _start(
    started: list[subprocess.Popen[str]], tmp_path: Path, *args: str
) -> tuple[subprocess.Popen[str], Path]:
    stderr_path = tmp_path / "serve.stderr"
    env = {
        **os.environ,
        "LEADGW_DATA_DIR": str(tmp_path / "data"),
        # Loading the demo corpus (worker 0) keeps start-up going for seconds: the signal
        # arrives while it runs.
        "LEADGW_LOAD_DEMO_CORPUS": "true",
        "PYTHONUNBUFFERED": "1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--port", "0", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr_path.open("w"),
        text=True,
    )
    started.append(process)
    return process, stderr_path


def _wait_for_workers_starting(stderr_path: Path, count: int, limit_s: float = 90.0) -> None:
    deadline = time.monotonic() + limit_s
    while stderr_path.read_text().count(STARTING) < count:
        assert time.monotonic() < deadline, stderr_path.read_text()
        time.sleep(0.05)


def _finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    code = process.wait(timeout=90)
    assert process.stdout is not None
    return code, process.stdout.read()


def test_sigterm_during_multi_worker_start_up_exits_0_and_says_so(started, tmp_path: Path) -> None:
    process, stderr_path = _start(started, tmp_path, "--workers", "2")
    _wait_for_workers_starting(stderr_path, 2)
    process.send_signal(signal.SIGTERM)
    code, stdout = _finish(process)
    stderr = stderr_path.read_text()
    assert "leadgw ready" not in stdout, "the signal came too late to test start-up"
    assert code == 0, stderr
    assert "stopped during start-up" in stderr
    assert "did not become ready" not in stderr


def test_sigterm_during_single_process_start_up_exits_0_and_says_so(
    started, tmp_path: Path
) -> None:
    process, stderr_path = _start(started, tmp_path, "--workers", "1")
    _wait_for_workers_starting(stderr_path, 1)
    process.send_signal(signal.SIGTERM)
    code, stdout = _finish(process)
    stderr = stderr_path.read_text()
    assert "leadgw ready" not in stdout, "the signal came too late to test start-up"
    assert code == 0, stderr
    assert "asked to stop during start-up" in stderr


def test_a_worker_killed_during_start_up_is_reported_with_its_signal(
    started, tmp_path: Path
) -> None:
    process, stderr_path = _start(started, tmp_path, "--workers", "2")
    _wait_for_workers_starting(stderr_path, 2)
    supervisor = psutil.Process(process.pid)
    # The spawned children: the shared store's host first, then the workers and the summaries
    # process.
    children = [p for p in supervisor.children() if "spawn_main" in " ".join(p.cmdline())]
    assert len(children) == 4, [p.cmdline() for p in children]
    victim = max(children, key=lambda p: (p.create_time(), p.pid))
    victim.send_signal(signal.SIGKILL)
    code, stdout = _finish(process)
    stderr = stderr_path.read_text()
    assert "leadgw ready" not in stdout
    assert code == 2, stderr
    assert f"(pid {victim.pid}) was killed by signal SIGKILL before it was ready" in stderr
    assert "did not become ready in time" not in stderr
