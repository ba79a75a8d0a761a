"""The flooding tenant of ``tenant-flood``: a spawned process that keeps ``concurrency`` calls in
flight (closed loop: each user sends its next call when the last one answers, refused or not)
until told to stop, and counts the answers by status code."""

from __future__ import annotations

import asyncio
import multiprocessing.queues
import multiprocessing.synchronize
import time
from dataclasses import dataclass, field

import grpc

from benchmarks.targets import CHANNEL_OPTIONS


@dataclass(slots=True)
class FloodCounts:
    """What the flood sent and got back, over its whole life (``seconds``)."""

    sent: int = 0
    ok: int = 0
    codes: dict[str, int] = field(default_factory=dict)  # every failure, by gRPC status name
    seconds: float = 0.0

    def add(self, other: FloodCounts) -> None:
        self.sent += other.sent
        self.ok += other.ok
        self.seconds += other.seconds
        for code, n in other.codes.items():
            self.codes[code] = self.codes.get(code, 0) + n


@dataclass(frozen=True, slots=True)
class FloodPlan:
    address: str
    method: str
    payloads: tuple[bytes, ...]
    metadata: tuple[tuple[str, str], ...]
    concurrency: int
    timeout_s: float


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

        async def user(offset: int) -> None:
            i = offset
            while not stopping.is_set():
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
                i += 1

        async def watch() -> None:
            await asyncio.to_thread(stop.wait)
            stopping.set()

        started = time.monotonic()
        users = [asyncio.create_task(user(n)) for n in range(plan.concurrency)]
        queue.put(("started", None))
        await watch()
        await asyncio.gather(*users)
        counts.seconds = time.monotonic() - started
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
