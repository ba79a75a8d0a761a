"""Evidence for latency-tail stalls, measured inside a gateway process (``stall_probe = true``).

Three instruments, each cheap enough to leave on during a bench run:

- the event loop's lag: a task that sleeps ``interval_s`` and records how much later than asked
  it woke; a request that arrives during a stall waits at least that long. For each stall
  (over ``STALL_MS``) it also splits the time by where the loop's thread was (Linux's
  schedstat): on the CPU (running callbacks: the process's own work), runnable but waiting for
  a CPU (other processes), or blocked (waiting for the interpreter lock another thread holds);
- garbage-collection pauses, per generation, from ``gc.callbacks``;
- with ``slow_callbacks``, asyncio's own debug mode logging every callback that held the loop
  longer than ``slow_callback_s`` (debug mode costs CPU: use it to name a stall, not to size it).

At stop the probe logs one ``stall probe`` record with the counts, percentiles and maxima.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

STALL_MS = 2.0  # a wake-up this late counts as a stall, and its cause is looked at
# Upper bounds (ms) of the histogram buckets: fine below a millisecond, coarse above.
BUCKETS_MS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, float("inf"))


@dataclass(slots=True)
class Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * len(BUCKETS_MS))
    total_ms: float = 0.0
    max_ms: float = 0.0

    def add(self, ms: float) -> None:
        for i, bound in enumerate(BUCKETS_MS):
            if ms <= bound:
                self.counts[i] += 1
                break
        self.total_ms += ms
        self.max_ms = max(self.max_ms, ms)

    @property
    def count(self) -> int:
        return sum(self.counts)

    def quantile(self, q: float) -> float:
        """The bucket bound under which a fraction ``q`` of the samples fell."""
        wanted, seen = q * self.count, 0
        for bound, n in zip(BUCKETS_MS, self.counts, strict=True):
            seen += n
            if seen >= wanted and n:
                return min(bound, self.max_ms)
        return self.max_ms

    def summary(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "total_ms": round(self.total_ms, 3),
            "max_ms": round(self.max_ms, 3),
            "p99_ms_at_most": self.quantile(0.99),
            "p999_ms_at_most": self.quantile(0.999),
            "over_5ms": sum(n for b, n in zip(BUCKETS_MS, self.counts, strict=True) if b > 5),
        }


def _schedstat() -> tuple[int, int] | None:
    """This thread's time on the CPU and time runnable but waiting for one, in ns (Linux's
    /proc/thread-self/schedstat); None where there is no such file."""
    try:
        with open("/proc/thread-self/schedstat", "rb") as stat:
            on_cpu, waiting, _ = stat.read().split()
    except (OSError, ValueError):
        return None
    return int(on_cpu), int(waiting)


class StallProbe:
    """Measures loop lag and GC pauses from ``start()`` (inside the running loop) to ``stop()``."""

    def __init__(
        self,
        interval_s: float = 0.005,
        *,
        slow_callbacks: bool = False,
        slow_callback_s: float = 0.005,
    ) -> None:
        self.interval_s = interval_s
        self.slow_callbacks = slow_callbacks
        self.slow_callback_s = slow_callback_s
        self.loop_lag = Histogram()
        self.stalls = Histogram()
        self.stall_ms = {"on_cpu": 0.0, "waiting_for_a_cpu": 0.0, "blocked": 0.0}
        self.gc_pauses = {generation: Histogram() for generation in range(3)}
        self._gc_started: float | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.slow_callbacks:
            loop.set_debug(True)
            loop.slow_callback_duration = self.slow_callback_s
        gc.callbacks.append(self._on_gc)
        self._task = loop.create_task(self._watch_loop(), name="stall-probe")

    async def stop(self) -> dict[str, Any]:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        summary = self.summary()
        log.info("stall probe", extra={"stall_probe": summary})
        return summary

    def summary(self) -> dict[str, Any]:
        return {
            "loop_lag": self.loop_lag.summary(),
            "stalls_over_ms": STALL_MS,
            "stalls": self.stalls.summary(),
            "stall_shares": {
                where: round(ms / self.stalls.total_ms, 3) if self.stalls.total_ms else None
                for where, ms in self.stall_ms.items()
            },
            "gc_pauses": {str(g): h.summary() for g, h in self.gc_pauses.items()},
        }

    async def _watch_loop(self) -> None:
        interval = self.interval_s
        while True:
            asked, before = time.perf_counter(), _schedstat()
            await asyncio.sleep(interval)
            lag_ms = (time.perf_counter() - asked - interval) * 1e3
            self.loop_lag.add(lag_ms)
            after = _schedstat() if lag_ms > STALL_MS else None
            if after is not None and before is not None:
                # Where the loop's thread was meanwhile: on the CPU (running callbacks: the
                # process's own work), runnable but waiting for a CPU (other processes), or
                # neither (blocked: waiting for the interpreter lock another thread holds).
                on_cpu = min(lag_ms, (after[0] - before[0]) / 1e6)
                runnable = min(lag_ms - on_cpu, (after[1] - before[1]) / 1e6)
                self.stalls.add(lag_ms)
                self.stall_ms["on_cpu"] += on_cpu
                self.stall_ms["waiting_for_a_cpu"] += runnable
                self.stall_ms["blocked"] += lag_ms - on_cpu - runnable

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif self._gc_started is not None:
            self.gc_pauses[info["generation"]].add((time.perf_counter() - self._gc_started) * 1e3)
            self._gc_started = None
