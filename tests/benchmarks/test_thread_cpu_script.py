"""``scripts/thread_cpu.py``: a watched process's threads and their CPU while a command runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "thread_cpu.py"

# Burns 0.3 s of CPU in a second thread once the file named by argv[1] exists, then writes
# argv[2] and, like the main thread, sleeps until killed: the burn happens while the measured
# command runs, whatever the load.
BURNER = """
import os, sys, threading, time
def burn():
    while not os.path.exists(sys.argv[1]):
        time.sleep(0.01)
    start = time.thread_time()
    while time.thread_time() - start < 0.3:
        pass
    open(sys.argv[2], "w").close()
    time.sleep(600)  # an ended thread leaves /proc, and its CPU with it
threading.Thread(target=burn).start()
time.sleep(600)
"""
WAIT_FOR = "import os, sys, time\nwhile not os.path.exists(sys.argv[1]): time.sleep(0.01)"


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads Linux's /proc")
def test_counts_the_cpu_of_a_thread_that_works_during_the_command(tmp_path: Path) -> None:
    go, done = tmp_path / "go", tmp_path / "done"
    burner = subprocess.Popen([sys.executable, "-c", BURNER, str(go), str(done)])
    try:
        # The command starts the burn and returns when it is over.
        command = f"open({str(go)!r}, 'w').close()\n{WAIT_FOR}"
        out = subprocess.run(
            [
                sys.executable,
                str(SCRIPT),
                "--pid",
                str(burner.pid),
                "--requests",
                "3",
                "--",
                sys.executable,
                "-c",
                command,
                str(done),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
    finally:
        burner.kill()
        burner.wait()
    threads = re.findall(rf"pid {burner.pid} thread +(\d+) .* ([\d.]+) ms per request", out)
    assert threads, out
    tid, ms = max(threads, key=lambda t: float(t[1]))
    # The burning thread is not the main one, and ~300 ms / 3 requests = ~100 ms per request
    # (ticks are 10 ms; the thread also spent a little before the burn).
    assert int(tid) != burner.pid
    assert 80.0 <= float(ms) <= 150.0, out
    total = float(re.search(r"total ([\d.]+) ms per request", out).group(1))  # type: ignore[union-attr]
    assert total >= float(ms)
