"""Servers the harness starts itself: a subprocess that prints ``listening on HOST:PORT`` when
ready, watched until then with a bounded wait, and stopped with SIGTERM (then SIGKILL)."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

READY_LINE = re.compile(r"listening on (?P<host>[\d.]+):(?P<port>\d+)")


class ServerStartError(Exception):
    """A server did not become ready; the message is one line."""


@dataclass
class ServerProcess:
    """A running server subprocess and where it listens."""

    name: str
    process: subprocess.Popen[str]
    address: str
    log_path: Path
    _threads: list[threading.Thread] = field(default_factory=list)
    # Removed after a clean exit; kept (with the log) when something went wrong, to look at.
    scratch: Path | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, grace_s: float = 10.0) -> int | None:
        """SIGTERM, wait up to ``grace_s``, then SIGKILL; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.stop() == 0:
            self.log_path.unlink(missing_ok=True)
            if self.scratch is not None:
                shutil.rmtree(self.scratch, ignore_errors=True)


def free_port() -> int:
    """A port free right now on 127.0.0.1, for servers that cannot bind port 0 themselves."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def last_line(path: Path) -> str:
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output)"


def start_listening_server(
    name: str,
    command: list[str],
    ready_timeout_s: float = 60.0,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> ServerProcess:
    """Start ``command`` and wait for its ready line; its stderr goes to a log file."""
    log = Path(tempfile.mkstemp(prefix=f"leadgw-bench-{name}-", suffix=".log")[1])
    with log.open("w") as log_file:
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=log_file,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
            cwd=cwd,
        )
    found: dict[str, str] = {}
    ready = threading.Event()

    def read_stdout() -> None:
        # Keeps draining after the ready line so a chatty server never blocks on a full pipe.
        assert process.stdout is not None
        for line in process.stdout:
            if not ready.is_set() and (match := READY_LINE.search(line)):
                found["address"] = f"{match['host']}:{match['port']}"
                ready.set()
        ready.set()

    reader = threading.Thread(target=read_stdout, name=f"{name}-stdout", daemon=True)
    reader.start()
    ready.wait(ready_timeout_s)
    if "address" not in found:
        exited = process.poll()
        server = ServerProcess(name, process, "", log)
        server.stop(2.0)
        why = f"exited with code {exited}" if exited is not None else "timed out"
        raise ServerStartError(
            f"{name}: {why} before it was ready after {ready_timeout_s:g} s: {last_line(log)}"
        )
    return ServerProcess(name, process, found["address"], log, [reader])


def wait_until(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.2) -> bool:
    """Poll ``predicate()`` until it is true or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return False
