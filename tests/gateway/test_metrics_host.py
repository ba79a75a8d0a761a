"""The Prometheus endpoint binds the address metrics_host names, not always 127.0.0.1."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

# Another loopback address: reachable here, and distinguishable from the default bind.
HOST = "127.0.0.2"
ROOT = Path(__file__).resolve().parents[2]


def _metrics_port(gateway, host: str) -> int:
    pattern = re.compile(rf"Prometheus metrics on http://{re.escape(host)}:(\d+)/metrics")
    for _ in range(100):
        if match := pattern.search(gateway.stderr_text()):
            return int(match[1])
        time.sleep(0.05)
    raise AssertionError(gateway.stderr_text())


def test_metrics_bind_the_configured_host(gateway_process) -> None:
    gateway = gateway_process("--metrics-port", "0", env={"LEADGW_METRICS_HOST": HOST})
    port = _metrics_port(gateway, HOST)
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=10) as reply:
        assert b"# TYPE" in reply.read()
    # Bound to that address only: the default one refuses.
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10)


@pytest.mark.parametrize("port", ["70000", "-1"])
def test_a_metrics_port_out_of_range_is_a_settings_error(tmp_path: Path, port: str) -> None:
    # docs/configuration.md: a value out of range stops the gateway at start with a message
    # naming it (exit 2); 70000 was a traceback from the endpoint's bind (exit 1).
    env = {**os.environ, "LEADGW_DATA_DIR": str(tmp_path / "data"), "LEADGW_WORKERS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--port", "0", "--metrics-port", port],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "invalid settings" in done.stderr and "metrics_port" in done.stderr
    assert "Traceback" not in done.stderr
