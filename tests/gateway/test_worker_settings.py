"""What each process of ``serve --workers N`` is configured with, beyond the shared settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.settings import Settings
from gateway.workers import WORKER_CONNECTION_AGE_S, _for_worker


def test_workers_age_connections_out_unless_told_otherwise() -> None:
    worker = _for_worker(Settings(workers=2))
    assert worker.max_connection_age_s == WORKER_CONNECTION_AGE_S
    assert Settings(workers=2).max_connection_age_s is None  # a single process keeps them
    chosen = _for_worker(Settings(workers=2, max_connection_age_s=300))
    assert chosen.max_connection_age_s == 300


def test_the_workers_grace_lets_the_longest_summary_finish() -> None:
    # A summary may run summary_deadline_s; a shorter grace cut summaries with UNAVAILABLE.
    worker = _for_worker(Settings(workers=2, summary_deadline_s=45))
    assert worker.max_connection_age_grace_s == 45
    assert _for_worker(Settings(workers=2)).max_connection_age_grace_s == 30


def test_a_connection_grace_shorter_than_a_summary_is_refused() -> None:
    with pytest.raises(ValidationError, match="max_connection_age_grace_s"):
        Settings(max_connection_age_s=60, max_connection_age_grace_s=10, summary_deadline_s=20)
    assert Settings(max_connection_age_s=60, max_connection_age_grace_s=20).summary_deadline_s == 20


def test_each_worker_serves_metrics_on_loopback_for_the_supervisors_endpoint() -> None:
    worker = _for_worker(Settings(workers=3, metrics_port=9464, metrics_host="0.0.0.0"))
    assert (worker.metrics_host, worker.metrics_port) == ("127.0.0.1", 0)
    assert _for_worker(Settings(workers=2)).metrics_port is None


def test_the_event_loop_setting_picks_the_loop() -> None:
    import asyncio

    import uvloop

    from gateway.server import loop_factory, run_event_loop

    assert Settings().event_loop == "uvloop"
    assert loop_factory("uvloop") is uvloop.new_event_loop
    assert loop_factory("asyncio") is None

    async def loop_type() -> int:
        return int(isinstance(asyncio.get_running_loop(), uvloop.Loop))

    assert run_event_loop(loop_type(), Settings(event_loop="uvloop")) == 1
    assert run_event_loop(loop_type(), Settings(event_loop="asyncio")) == 0
