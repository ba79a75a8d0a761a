"""The Prometheus endpoint binds the address metrics_host names, not always 127.0.0.1."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request

import pytest

# Another loopback address: reachable here, and distinguishable from the default bind.
HOST = "127.0.0.2"


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
