"""SIGTERM under load: every call that reached the gateway is answered or refused with
UNAVAILABLE (which clients' retry policies retry), never CANCELLED or UNKNOWN; the gateway exits
0. One process and two worker processes, each with 16 client threads looping ScoreLeads."""

from __future__ import annotations

import signal

import pytest
from load import ScoreLoad

ALLOWED = {"OK", "UNAVAILABLE"}


@pytest.mark.parametrize("workers", [1, 2], ids=["single-worker", "two-workers"])
def test_sigterm_under_load_every_call_is_answered_or_unavailable_and_exit_is_0(
    gateway_process, workers: int
) -> None:
    gateway = gateway_process("--workers", str(workers))
    load = ScoreLoad(gateway.address, threads=16)
    load.start()
    try:
        load.wait_for_calls(400)
        gateway.process.send_signal(signal.SIGTERM)
        code = gateway.process.wait(timeout=60)
    finally:
        statuses = load.stop()
    assert set(statuses) <= ALLOWED, (dict(statuses), load.details)
    assert statuses["OK"] >= 400
    assert code == 0
