"""Open-loop latency counts from the intended send time, so a server that freezes shows in the
tail. Two runs in the same test, compared with each other: no absolute timing figure."""

from __future__ import annotations

import pytest
from bench_helpers import SHORT

pytestmark = pytest.mark.bench

OPEN_LOOP = (
    "--targets", "transport-floor",
    "--mode", "open",
    "--arrival", "fixed",
    "--rate", "200",
    "--features", "16",
    "--no-plots",
)  # fmt: skip


def test_a_stalling_server_raises_the_open_loop_tail(bench, tmp_path) -> None:
    # An empty repository: the floor needs no model, only the column count.
    args = (*SHORT, *OPEN_LOOP, "--model-repository", str(tmp_path), "--duration", "3")
    steady = bench(*args)
    stalled = bench(*args, "--floor-stall-every", "100", "--floor-stall-ms", "300")
    assert steady.returncode == 0, steady.stderr
    assert stalled.returncode == 0, stalled.stderr
    (steady_run,) = steady.result()["runs"]
    (stalled_run,) = stalled.result()["runs"]
    assert stalled.result()["parameters"]["floor_stall_every"] == 100
    for r in (steady_run, stalled_run):
        assert r["ok"] + sum(r["errors"].values()) == r["sent"] > 0
    # Every request sent while the server was frozen waited for it, and is timed that way.
    assert stalled_run["latency_ms"]["p99"] > 2 * steady_run["latency_ms"]["p99"]
