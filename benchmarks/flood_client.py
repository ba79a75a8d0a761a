"""The flooding tenant of ``tenant-flood``: a spawned process that floods until told to stop, and
counts the answers by status code and its own CPU time.

Two forms. Closed loop (``rate`` None): ``concurrency`` users each send the next call when the
last one answers, refused or not, so the flood's intensity is whatever the gateway and this
process can turn around: the cheaper a refusal, the faster the flood. Open loop (``rate`` set):
calls leave on a fixed schedule, ``rate`` per second, whatever the answers, so the gateway gets
the same flood however cheap its refusals are."""

from __future__ import annotations

import asyncio
import multiprocessing.queues
import multiprocessing.synchronize
import time
from dataclasses import dataclass, field

import grpc

from benchmarks.targets import CHANNEL_OPTIONS

OPEN_LOOP_MAX_IN_FLIGHT = 512
"""Open loop: calls past this many unanswered are not sent (counted as ``skipped``)."""


@dataclass(slots=True)
class FloodCounts:
    """What the flood sent and got back, over its whole life (``seconds``)."""

    sent: int = 0
    ok: int = 0
    codes: dict[str, int] = field(default_factory=dict)  # every failure, by gRPC status name
    seconds: float = 0.0
    cpu_s: float = 0.0  # CPU time of the flood process itself (user + system)
    skipped: int = 0  # open loop: calls not sent, OPEN_LOOP_MAX_IN_FLIGHT being unanswered

    def add(self, other: FloodCounts) -> None:
        self.sent += other.sent
        self.ok += other.ok
        self.seconds += other.seconds
        self.cpu_s += other.cpu_s
        self.skipped += other.skipped
        for code, n in other.codes.items():
            self.codes[code] = self.codes.get(code, 0) + n

    @property
    def cores(self) -> float:
        return self.cpu_s / self.seconds if self.seconds else 0.0


@dataclass(frozen=True, slots=True)
class FloodPlan:
    address: str
    method: str
    payloads: tuple[bytes, ...]
    metadata: tuple[tuple[str, str], ...]
    concurrency: int
    timeout_s: float
    rate: float | None = None  # calls/s, open loop; None: closed loop at ``concurrency``


async def _flood(
    plan: FloodPlan,
    stop: multiprocessing.synchronize.Event,
    queue: multiprocessing.queues.Queue,
) -> FloodCounts:
    counts = FloodCounts()
    stopping = asyncio.Event()
    async with grpc.aio.insecure_channel(plan.address, options=CHANNEL_OPTIONS) as channel:
        await asyncio.wait_for(channel.channel_ready(), 10.0)
        call = channel.unary_unary(plan.method)

        async def one(i: int) -> None:
            counts.sent += 1
            try:
                await call(
                    plan.payloads[i % len(plan.payloads)],
                    timeout=plan.timeout_s,
                    metadata=plan.metadata,
                )
                counts.ok += 1
            except grpc.aio.AioRpcError as exc:
                name = exc.code().name
                counts.codes[name] = counts.codes.get(name, 0) + 1

        async def user(offset: int) -> None:
            i = offset
            while not stopping.is_set():
                await one(i)
                i += 1

        async def scheduled(rate: float) -> None:
            """Open loop: call i leaves at start + i / rate; late ones leave at once."""
            in_flight: set[asyncio.Task[None]] = set()
            start, i = time.monotonic(), 0
            while not stopping.is_set():
                due = int((time.monotonic() - start) * rate) + 1
                while i < due:
                    if len(in_flight) >= OPEN_LOOP_MAX_IN_FLIGHT:
                        counts.skipped += 1
                    else:
                        task = asyncio.create_task(one(i))
                        in_flight.add(task)
                        task.add_done_callback(in_flight.discard)
                    i += 1
                await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            if in_flight:
                await asyncio.gather(*in_flight)

        async def watch() -> None:
            await asyncio.to_thread(stop.wait)
            stopping.set()

        started, cpu_started = time.monotonic(), time.process_time()
        if plan.rate is None:
            senders = [asyncio.create_task(user(n)) for n in range(plan.concurrency)]
        else:
            senders = [asyncio.create_task(scheduled(plan.rate))]
        queue.put(("started", None))
        await watch()
        await asyncio.gather(*senders)
        counts.seconds = time.monotonic() - started
        counts.cpu_s = time.process_time() - cpu_started
    return counts


def flood_main(
    plan: FloodPlan,
    stop: multiprocessing.synchronize.Event,
    queue: multiprocessing.queues.Queue,
) -> None:
    """Entry point of the spawned flood process; reports ("started"), then ("done", counts)."""
    try:
        queue.put(("done", asyncio.run(_flood(plan, stop, queue))))
    except Exception as exc:  # reported to the bench, which says so and stops
        queue.put(("failed", " ".join(str(exc).split())[:300] or type(exc).__name__))
