"""``leadgw bench --floor-grpc-experiments``: the transport floor with the gateway's gRPC
configuration, for a comparison on equal terms."""

from __future__ import annotations

import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import pytest

from benchmarks.suite import BenchConfig, _start_floor


@pytest.mark.parametrize("experiments", [None, "-event_engine_client,-event_engine_listener"])
def test_the_floor_runs_with_the_grpc_experiments_it_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, experiments: str | None
) -> None:
    """``--floor-grpc-experiments``: the floor's process gets them as GRPC_EXPERIMENTS (grpc reads
    it on import, so only the environment it starts with counts); without it, none."""
    monkeypatch.delenv("GRPC_EXPERIMENTS", raising=False)
    with ExitStack() as stack:
        server = _start_floor(
            BenchConfig(floor_grpc_experiments=experiments), stack, tmp_path, 16, None
        )
        environ = Path(f"/proc/{server.pid}/environ").read_bytes().split(b"\0")
    given = [e.decode() for e in environ if e.startswith(b"GRPC_EXPERIMENTS=")]
    assert given == ([] if experiments is None else [f"GRPC_EXPERIMENTS={experiments}"])


def test_a_malformed_floor_grpc_experiments_list_is_refused() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "gateway", "bench", "--floor-grpc-experiments", "Event Engine"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 2
    assert "--floor-grpc-experiments: grpc_experiments: 'Event Engine' is not an experiment" in (
        run.stderr
    )
