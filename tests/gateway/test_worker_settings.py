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


@pytest.fixture
def four_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process may run on CPUs 2, 3, 5 and 7 and has no lower CPU quota."""
    import gateway.workers

    monkeypatch.setattr(gateway.workers.os, "sched_getaffinity", lambda pid: {7, 3, 5, 2})
    monkeypatch.setattr(gateway.workers, "usable_cpus", lambda: 4)


def test_pinned_workers_take_the_usable_cpus_in_order_wrapping_around(four_cpus) -> None:
    from gateway.workers import worker_cpus

    assert worker_cpus(Settings(workers=4, pin_workers="on")) == [2, 3, 5, 7]
    assert worker_cpus(Settings(workers=6, pin_workers="on")) == [2, 3, 5, 7, 2, 3]
    assert worker_cpus(Settings(workers=2, pin_workers="on")) == [2, 3]


def test_auto_pins_only_one_worker_per_cpu_of_the_gateways_own(
    four_cpus, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gateway.workers
    from gateway.workers import worker_cpus

    assert Settings().pin_workers == "auto"
    assert worker_cpus(Settings(workers=4)) == [2, 3, 5, 7]
    # Fewer workers than CPUs: let them move.
    assert worker_cpus(Settings(workers=2)) is None
    assert worker_cpus(Settings(workers=6)) is None
    # A pod limited to 2 CPUs of a node whose 4 it may run on: the cores are shared.
    monkeypatch.setattr(gateway.workers, "usable_cpus", lambda: 2)
    assert worker_cpus(Settings(workers=4)) is None
    assert worker_cpus(Settings(workers=2)) is None


def test_one_worker_or_off_is_never_pinned(four_cpus) -> None:
    from gateway.workers import worker_cpus

    assert worker_cpus(Settings(workers=1, pin_workers="on")) is None
    assert worker_cpus(Settings(workers=4, pin_workers="off")) is None


def test_pinning_a_process_pins_the_threads_it_already_has() -> None:
    """In a child (pinning this process would slow the rest of the suite): a thread started
    before ``pin_process`` ends up on the CPU too, and so does one started after."""
    import json
    import os
    import subprocess
    import sys

    cpu = max(os.sched_getaffinity(0))
    code = f"""
import json, os, threading
from gateway.workers import pin_process
started = threading.Event(); stop = threading.Event()
def before():
    started.set(); stop.wait()
early = threading.Thread(target=before); early.start(); started.wait()
pin_process({cpu})
late = threading.Thread(target=stop.wait); late.start()
print(json.dumps({{str(t.native_id): sorted(os.sched_getaffinity(t.native_id))
                  for t in (threading.main_thread(), early, late)}}))
stop.set()
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    threads = json.loads(out.stdout)
    assert len(threads) == 3 and all(cpus == [cpu] for cpus in threads.values())
