"""One load-generator process: its own event loop and channels, a closed or open loop, and
histograms sent back encoded.

Open loop: every request has an intended send time from a fixed or Poisson schedule, and its
latency is measured from that time, not from when it was actually sent. A generator or server that
falls behind therefore shows up as latency instead of silently lowering the load (no coordinated
omission).
"""

from __future__ import annotations

import asyncio
import multiprocessing.queues
import multiprocessing.synchronize
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import grpc
import psutil

from benchmarks.histograms import new_histogram, record_seconds
from benchmarks.targets import Sender, Target

# epoll waits in whole milliseconds, rounded up, so a timer fires up to 1 ms late: the open loop
# wakes this much early and sends at once, timing such a request from when it actually left.
EARLY_WAKE_S = 0.001

Mode = Literal["closed", "open"]
Arrival = Literal["fixed", "poisson"]


@dataclass(frozen=True, slots=True)
class LoadShape:
    """How load is offered to one target, across all generator processes."""

    mode: Mode
    concurrency: int = 8
    rate: float = 100.0
    arrival: Arrival = "poisson"
    warmup_s: float = 2.0
    duration_s: float = 10.0
    processes: int = 2
    channels: int = 2
    max_in_flight: int = 2000
    connect_timeout_s: float = 5.0
    drain_s: float = 6.0
    seed: int = 1


@dataclass(frozen=True, slots=True)
class WorkerPlan:
    """One process's share of a ``LoadShape``."""

    index: int
    target: Target
    shape: LoadShape
    concurrency: int
    rate: float
    phase_s: float


@dataclass(slots=True)
class WorkerOutcome:
    """What one process measured inside the window (warm-up excluded)."""

    index: int
    pid: int
    sent: int = 0
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    not_sent: int = 0
    cap_waits: int = 0
    cpu_s: float = 0.0
    latency: bytes = b""
    send_lag: bytes = b""


@dataclass(slots=True)
class _Tally:
    outcome: WorkerOutcome
    latency: Any = field(default_factory=new_histogram)
    send_lag: Any = field(default_factory=new_histogram)
    completed: int = 0
    failed: int = 0

    def finish(self, code: str | None, seconds: float, measured: bool) -> None:
        self.completed += 1
        if code is not None:
            self.failed += 1
        if not measured:
            return
        if code is None:
            self.outcome.ok += 1
            record_seconds(self.latency, seconds)
        else:
            self.outcome.errors[code] = self.outcome.errors.get(code, 0) + 1


@dataclass(slots=True)
class _Window:
    start: float
    measure_start: float
    end: float
    hard_stop: float


async def _attempt(send: Sender) -> str | None:
    """None on success, else the gRPC status name (or CLIENT_<exception> for local failures)."""
    try:
        await send()
    except grpc.aio.AioRpcError as exc:
        return exc.code().name
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        return f"CLIENT_{type(exc).__name__}"
    return None


async def _closed_loop(
    send: Sender, users: int, tally: _Tally, w: _Window, in_process: bool
) -> None:
    async def user() -> None:
        while (begun := time.monotonic()) < w.end:
            measured = begun >= w.measure_start
            tally.outcome.sent += measured
            code = await _attempt(send)
            tally.finish(code, time.monotonic() - begun, measured)
            if in_process:
                # An in-process call never awaits anything: yield so CPU sampling and progress run.
                await asyncio.sleep(0)

    await asyncio.gather(*(user() for _ in range(users)))


async def _open_loop(send: Sender, plan: WorkerPlan, tally: _Tally, w: _Window) -> None:
    shape = plan.shape
    rng = random.Random(shape.seed * 1000 + plan.index)

    def gap() -> float:
        return 1.0 / plan.rate if shape.arrival == "fixed" else rng.expovariate(plan.rate)

    slots = asyncio.Semaphore(shape.max_in_flight)
    in_flight: dict[asyncio.Task[None], bool] = {}

    async def one(origin: float, measured: bool) -> None:
        try:
            code = await _attempt(send)
        finally:
            slots.release()
        tally.finish(code, time.monotonic() - origin, measured)

    intended = w.start + (plan.phase_s if shape.arrival == "fixed" else gap())
    sends = 0
    while intended < w.end:
        now = time.monotonic()
        if now >= w.hard_stop:
            break
        if intended - now > EARLY_WAKE_S:
            await asyncio.sleep(intended - now - EARLY_WAKE_S)
        elif sends % 32 == 0:
            await asyncio.sleep(0)  # behind schedule: still let finished calls be processed
        measured = intended >= w.measure_start
        if slots.locked():
            tally.outcome.cap_waits += measured
        await slots.acquire()
        sent_at = time.monotonic()
        if measured:
            tally.outcome.sent += 1
            record_seconds(tally.send_lag, max(0.0, sent_at - intended))
        # Late: timed from the intended time (no coordinated omission). Early: from the send.
        task = asyncio.create_task(one(min(intended, sent_at), measured))
        in_flight[task] = measured
        task.add_done_callback(in_flight.pop)
        sends += 1
        intended += gap()
    while intended < w.end:  # scheduled but never sent: the generator hit its hard stop
        tally.outcome.not_sent += intended >= w.measure_start
        intended += gap()
    if in_flight:
        await asyncio.wait(in_flight, timeout=max(0.0, w.hard_stop - time.monotonic()))
    # Still running past the hard stop: cancelled, and counted as client-side errors if measured.
    stuck = dict(in_flight)
    for task in stuck:
        task.cancel()
    await asyncio.gather(*stuck, return_exceptions=True)
    cut = sum(stuck.values())
    if cut:
        tally.outcome.errors["CLIENT_HARD_STOP"] = (
            tally.outcome.errors.get("CLIENT_HARD_STOP", 0) + cut
        )


async def _sample_cpu(tally: _Tally, w: _Window) -> None:
    me = psutil.Process()
    await asyncio.sleep(max(0.0, w.measure_start - time.monotonic()))
    before = me.cpu_times()
    await asyncio.sleep(max(0.0, w.end - time.monotonic()))
    after = me.cpu_times()
    tally.outcome.cpu_s = (after.user + after.system) - (before.user + before.system)


async def _report_progress(tally: _Tally, index: int, queue: multiprocessing.queues.Queue) -> None:
    while True:
        queue.put(("progress", index, tally.completed, tally.failed))
        await asyncio.sleep(0.25)


async def _run(
    plan: WorkerPlan,
    queue: multiprocessing.queues.Queue,
    go: multiprocessing.synchronize.Event,
    start_at: Any,
) -> None:
    shape = plan.shape
    send = await plan.target.open(shape.channels, shape.connect_timeout_s)
    try:
        queue.put(("ready", plan.index))
        started = await asyncio.to_thread(go.wait, shape.connect_timeout_s + 120)
        if not started:
            return
        start = start_at.value
        measure_start = start + shape.warmup_s
        end = measure_start + shape.duration_s
        window = _Window(start, measure_start, end, end + shape.drain_s)
        tally = _Tally(WorkerOutcome(plan.index, os.getpid()))
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        cpu = asyncio.create_task(_sample_cpu(tally, window))
        progress = asyncio.create_task(_report_progress(tally, plan.index, queue))
        if shape.mode == "closed":
            await _closed_loop(send, plan.concurrency, tally, window, plan.target.in_process)
        else:
            await _open_loop(send, plan, tally, window)
        await cpu
        progress.cancel()
        tally.outcome.latency = tally.latency.encode()
        tally.outcome.send_lag = tally.send_lag.encode()
        queue.put(("done", plan.index, tally.outcome))
    finally:
        await send.aclose()


def worker_main(
    plan: WorkerPlan,
    queue: multiprocessing.queues.Queue,
    go: multiprocessing.synchronize.Event,
    start_at: Any,
) -> None:
    """Entry point of a generator process (spawned, so no state is inherited from the parent)."""
    try:
        asyncio.run(_run(plan, queue, go, start_at))
    except Exception as exc:
        message = " ".join(str(exc).split())[:300] or type(exc).__name__
        queue.put(("failed", plan.index, message))
