"""Fixtures shared by every test folder: the real gateway, as a process or in this process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
READY = re.compile(r"listening on (?P<host>[\d.]+):(?P<port>\d+)")


@dataclass
class GatewayProcess:
    """``leadgw serve`` in a child process, started on port 0."""

    process: subprocess.Popen[str]
    address: str
    ready_line: str
    stderr_path: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout=5)

    def stderr_text(self) -> str:
        """What the server has logged so far (JSON lines by default)."""
        return self.stderr_path.read_text()


def start_gateway_process(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60.0
) -> GatewayProcess:
    """Starts the real server and waits for its ready line; fails with its stderr if it dies."""
    full_env = {
        **os.environ,
        "LEADGW_DATA_DIR": str(tmp_path / "data"),
        "LEADGW_LOAD_DEMO_CORPUS": "false",
        # One process unless a test asks for more (--workers wins over the environment): the
        # default, one per core, would triple every test gateway's start-up work.
        "LEADGW_WORKERS": "1",
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    command = [sys.executable, "-m", "gateway", "serve", "--port", "0", *args]
    stderr_path = tmp_path / f"gateway-{time.monotonic_ns()}.stderr"
    stderr_file = open(stderr_path, "w+")  # noqa: SIM115 - lives as long as the process
    process = subprocess.Popen(
        command, cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=stderr_file, text=True
    )
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            process.wait(timeout=10)
            stderr_file.seek(0)
            raise RuntimeError(f"gateway exited ({process.returncode}):\n{stderr_file.read()}")
        match = READY.search(line)
        if match:
            address = f"{match['host']}:{match['port']}"
            return GatewayProcess(process, address, line.strip(), stderr_path)
    process.kill()
    raise RuntimeError("gateway did not become ready in time")


@pytest.fixture
def gateway_process(tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    """A factory: ``gateway_process("--keys-file", path)``; every process is stopped after."""
    started: list[GatewayProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> GatewayProcess:
        gateway = start_gateway_process(tmp_path, *args, env=env)
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop()


@pytest.fixture(scope="session")
def shared_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """One server for the read-only tests of a session (starting one costs about a second)."""
    gateway = start_gateway_process(tmp_path_factory.mktemp("shared-gateway"))
    yield gateway
    gateway.stop()


@pytest.fixture
async def inproc_gateway(tmp_path: Path) -> AsyncIterator[object]:
    """The gateway started in this process (for tests that inspect spans or internals)."""
    from gateway.server import start
    from gateway.settings import Settings

    gateway = await start(Settings(port=0, data_dir=tmp_path / "data", load_demo_corpus=False))
    try:
        yield gateway
    finally:
        await gateway.stop(grace=1.0, drain=0)
