"""Deadline-aware dynamic batching of one model version's requests.

Callers ``submit`` row matrices; one worker task per batcher concatenates what is queued into one
call of the (blocking) batch function, run in an executor, and resolves each caller's future with
its own rows of every output. Follows MLServer's adaptive batcher: futures, one batch per run, a
batch's exception set on every waiting future.

Flush policy, evaluated only while no batch is running (one batch at a time per batcher):

- at once when the oldest queued request arrived while no batch was running: a lone request adds
  one event-loop pass over a direct call, and whatever else was submitted in that same pass (a
  burst) rides along in the same batch;
- at once when the queue holds ``max_batch_size`` rows, or when the batcher is closing;
- else, for requests that queued while a batch ran, when the oldest has waited
  ``max_queue_delay_s``: under load, a little latency buys fuller batches and fewer runs;
- or earlier, when ``now + estimated run time + slack`` reaches a queued request's deadline.

Gathering under load (``gather_delay_s``): a worker that answers back to back never finds a
request waiting, because grpc.aio hands its loop one call per wake-up, so every batch above is
one request and each pays a whole model run (at 64 in flight, ~75 µs of ~300 a request). While
gathering, a small request that finds the batcher idle waits up to ``gather_delay_s`` for
company instead of running at once, and the arrivals meanwhile share its run. Whether to gather
is decided by its outcome: when requests arrive less than ``gather_delay_s`` apart, one of them
(at most one every ``GATHER_PROBE_EVERY_S``) waits as a probe; gathering goes on while its
batches average at least ``GATHER_STAY_REQUESTS`` requests and its waits stay busy (calls keep
arriving until the batch runs: ``GATHER_IDLE_SHARE``), and stops when either fails. A
sequential caller, whose probe can find no company, pays one wait in a probe period; light load,
or a few callers that all arrive early in the wait, leave gathering after a batch or two. Off
unless the model's ``[batching]`` sets ``gather_delay_us``: at 8 in flight it still cost
throughput (docs/perf/2026-12-01-gathering.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from enum import Enum
from functools import partial
from typing import Any

import numpy as np
from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN, Span, SpanContext, Status, StatusCode, Tracer

from runtimes.batch_timing import RunTimeModel
from runtimes.batching_config import BatchingConfig
from runtimes.errors import DeadlineExceeded, InvalidInput, ResourceExhausted, Unavailable
from runtimes.tracing import (
    LEAN,
    TraceDetail,
    batch_span,
    current_span_context,
    late_batch_span,
    record_batch_stats,
)

__all__ = ["BatchResult", "BatcherStats", "BatchingConfig", "DynamicBatcher", "OffQueueRun"]

log = logging.getLogger(__name__)

BatchFn = Callable[[np.ndarray], dict[str, np.ndarray]]
Outputs = dict[str, np.ndarray]
_Ran = tuple[list[Outputs], float]  # each caller's outputs, and the run's own seconds

MIN_RETRY_AFTER_S = 0.005
"""Floor of the retry hint on a full queue: sooner than this a retry would meet the same queue."""

# See ``_fits_inline``: a batch size timed on the event loop keeps running there up to this
# factor of ``inline_run_s``; one estimated above it, but within LOOP_RETRY_FACTOR of it, is still
# tried on the loop once in every LOOP_RETRY_EVERY decisions.
LOOP_KEEP_FACTOR = 1.5
LOOP_RETRY_FACTOR = 2.0
LOOP_RETRY_EVERY = 32
# ``run_now`` reads a run's CPU time on one run in this many, once its size has been timed.
LEARN_EVERY = 8
# How much earlier than strictly needed a deadline forces a flush. Event loops wake timers
# at millisecond granularity (asyncio rounds epoll's timeout up to the next ms; libuv counts
# ms), so a wake-up is up to 1 ms late before any jitter: at the old 1 ms a deadline-forced
# flush woke at the deadline itself about one run in eight of a test that waits for one, and
# its request was dropped "0.0 ms late". 3 ms leaves 2 for jitter and the reply's trip.
DEADLINE_SLACK_S = 0.003

# Gathering (see the module docstring): a probe at most this often; gathering stays on while its
# batches average (exponentially, this weight on the newest) at least this many requests. Each
# request in a batch of B saves a model run's share of (1 - 1/B) against a queued request's
# overhead of about half a run: B = 2 breaks even (docs/perf/2026-12-01-gathering.md).
GATHER_PROBE_EVERY_S = 2.0
GATHER_STAY_REQUESTS = 2.5
GATHER_WEIGHT = 0.25
# ... and while its waits are mostly busy: on average no more than this share of a gathered
# batch's wait comes after its last request arrived. A few callers in a closed loop (8 in flight
# over two workers) all arrive early in the wait and the loop then idles until it ends: their
# throughput fell 25-30% before this rule.
GATHER_IDLE_SHARE = 0.5


# ---- results and counters ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BatchResult:
    """One caller's outputs and how they were computed, for tracing and metrics."""

    outputs: Outputs
    queue_wait_s: float
    """From submit to the moment its batch was handed to the executor."""
    batch_id: int
    """Per batcher, increasing; the same for every caller of one batch."""
    batch_size: int
    """Rows in the batch that computed this result."""
    batch_requests: int
    """Callers merged into that batch."""
    run_s: float
    """The batch's run time, from hand-off to the executor until its outputs were back."""
    batch_span_context: SpanContext | None = None
    """The batch's span, for the request span to link to (None when tracing is off)."""
    started: float = 0.0
    """``time.monotonic()`` when its batch started: the end of its queue wait."""
    queued: bool = True
    """It waited in the queue; False when it found the batcher idle and ran at once."""


@dataclass(slots=True)
class BatcherStats:
    """Counters since start; ``DynamicBatcher.stats`` returns a snapshot."""

    batches: int = 0
    rows: int = 0
    rejected: int = 0
    """Refused because the queue was full."""
    expired: int = 0
    """Dropped before compute because their deadline had passed or could not be met."""
    cancelled: int = 0
    """Callers that went away; queued rows were never computed, running ones discarded."""
    failed_batches: int = 0
    gather_probes: int = 0
    """Times a request waited as a probe of whether gathering pays (see the module docstring)."""
    gathered_batches: int = 0
    """Batches of requests that waited for company while gathering."""


@dataclass(slots=True)
class OffQueueRun:
    """One request whose model runs outside the queue, on its caller's own thread (see
    ``DynamicBatcher.admit_off_queue``): admitted on the loop, run on the thread, counted back on
    the loop."""

    rows: int
    deadline: float | None
    arrived: float
    started: float = 0.0
    run_s: float = 0.0
    compute_s: float = 0.0
    outcome: str = "admitted"
    """admitted, then ran, failed (the model raised) or expired (its deadline passed first)."""
    batch_id: int = 0


# ---- the batcher ------------------------------------------------------------------------------


class _State(Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"


@dataclass(eq=False, slots=True)
class _Request:
    rows: np.ndarray
    deadline: float | None
    arrived: float
    seq: int
    future: asyncio.Future[BatchResult]
    arrived_idle: bool
    """No batch was running when it arrived: it need not wait for company."""
    span_context: SpanContext | None = None
    """The submitting request's span, for the batch span to link to."""
    state: _State = field(default=_State.QUEUED)
    queued: bool = True
    gathered: bool = False
    """Queued while the batcher was gathering: it waits up to ``gather_delay_s`` for company."""

    @property
    def n(self) -> int:
        return int(self.rows.shape[0])

    def fits_with(self, head: _Request) -> bool:
        # A request of another width or dtype runs in its own batch, where run_batch's own
        # error (if any) fails it alone instead of failing a whole concatenation.
        return self.rows.shape[1:] == head.rows.shape[1:] and self.rows.dtype == head.rows.dtype


class DynamicBatcher:
    """Merges concurrent submits for one model version into batched runs of ``run_batch``.

    ``run_batch`` is synchronous and blocking: it takes [rows, ...] and returns named outputs whose
    first dimension is rows. It runs in ``executor`` (by default a dedicated single thread, shut
    down by ``close``; a caller's executor is left running). A request with more rows than
    ``max_batch_size`` is not split: it runs alone, as one batch.
    """

    def __init__(
        self,
        run_batch: BatchFn,
        *,
        max_batch_size: int,
        max_queue_delay_s: float,
        max_queue_size: int,
        executor: Executor | None = None,
        name: str = "",
        deadline_slack_s: float = DEADLINE_SLACK_S,
        on_batch: Callable[[int, float, list[float]], None] | None = None,
        tracer: Tracer | None = None,
        inline_run_s: float = 0.0,
        trace_detail: TraceDetail = LEAN,
        computes_on_caller: bool = False,
        gather_delay_s: float = 0.0,
    ) -> None:
        """``deadline_slack_s``: how much earlier than strictly needed a deadline forces a flush,
        covering timer wake-up jitter and the reply's trip back to the client.
        ``on_batch(rows, run_s, queue_waits_s)`` is called after each successful batch (for
        metrics); ``tracer`` makes the batch spans, ``trace_detail`` says which batches get one
        (lean: those that served more than one request or ran slow). ``inline_run_s``: batches
        whose learned run time is at most this run on the event loop itself, skipping the
        executor hop (0: never; see ``_runs_inline``). ``computes_on_caller``: ``run_batch``
        computes on its calling thread alone (ONNX Runtime with one intra-op and one inter-op
        thread), so that thread's CPU time is the model's run time (see ``_run_one``).
        ``gather_delay_s``: how long a small request waits for company while the batcher is
        gathering under load (0: never gathers; see the module docstring)."""
        if max_batch_size <= 0 or max_queue_size <= 0 or max_queue_delay_s < 0:
            raise ValueError("max_batch_size and max_queue_size must be > 0, the delay >= 0")
        if gather_delay_s < 0:
            raise ValueError("gather_delay_s must be >= 0")
        self.name = name or "batcher"
        self.max_batch_size = max_batch_size
        self.max_queue_delay_s = max_queue_delay_s
        self.max_queue_size = max_queue_size
        self.deadline_slack_s = deadline_slack_s
        self._run_batch = run_batch
        self._on_batch = on_batch
        self._tracer = tracer or trace.get_tracer("leadgw.batcher")
        self._trace_detail = trace_detail
        self.inline_run_s = inline_run_s
        self._cpu_scale = 1.0 if computes_on_caller else 2.0
        self._owns_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"batch-{self.name}"
        )
        self.run_time = RunTimeModel()
        self._largest_timed = 0  # rows of the largest batch whose run time was observed
        # The runs made on the event loop alone: what a run there costs (``_fits_inline``).
        self.loop_run_time = RunTimeModel()
        self._largest_loop_timed = 0
        self._loop_retries = itertools.count(1)
        self._learn_turns = itertools.count(1)
        self._stats = BatcherStats()
        self._pending: deque[_Request] = deque()
        self._deadlines: list[tuple[float, int, _Request]] = []  # heap; stale entries skipped
        self._queued_rows = 0
        self._seq = itertools.count(1)
        self._running = False  # a batch is in the executor
        self._batch_ids = itertools.count(1)
        self._closed = False
        # asyncio objects belong to the running loop: made on first submit, not here.
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._sleeping_until: float | None = None  # inf: idle on an empty queue
        # Gathering under load (``_gathers``).
        self.gather_delay_s = gather_delay_s
        self.gathering = False
        self._last_arrival = -math.inf
        self._next_probe = -math.inf
        self._gathered_requests: float | None = None  # average requests a gathered batch
        self._gathered_idle = 0.0  # average share of a gathered batch's wait after its last arrival

    @classmethod
    def from_config(
        cls,
        run_batch: BatchFn,
        config: BatchingConfig,
        *,
        executor: Executor | None = None,
        name: str = "",
        on_batch: Callable[[int, float, list[float]], None] | None = None,
        trace_detail: TraceDetail = LEAN,
        computes_on_caller: bool = False,
    ) -> DynamicBatcher:
        return cls(
            run_batch,
            max_batch_size=config.max_batch_size,
            max_queue_delay_s=config.max_queue_delay_s,
            max_queue_size=config.max_queue_size,
            executor=executor,
            name=name,
            on_batch=on_batch,
            inline_run_s=config.inline_run_s,
            trace_detail=trace_detail,
            computes_on_caller=computes_on_caller,
            gather_delay_s=config.gather_delay_s,
        )

    @property
    def queue_depth_rows(self) -> int:
        """Rows waiting for a batch (not counting the batch running)."""
        return self._queued_rows

    @property
    def stats(self) -> BatcherStats:
        return replace(self._stats)

    # ---- submitting ----

    async def submit(self, rows: np.ndarray, *, deadline: float | None = None) -> Outputs:
        """This caller's rows of every output, in order. ``deadline``: a ``time.monotonic()``."""
        return (await self.submit_with_stats(rows, deadline=deadline)).outputs

    async def submit_with_stats(
        self, rows: np.ndarray, *, deadline: float | None = None
    ) -> BatchResult:
        """Like ``submit``, with the queue wait and the batch that computed the result."""
        if self._may_run_directly(rows):
            # Idle, nothing queued, and a run this small is cheaper than waking the worker task:
            # run it now, in the caller's task (two event-loop passes sooner).
            span_context = current_span_context()
            if span_context is None or not span_context.trace_flags.sampled:
                return self._run_alone(rows, deadline)
            request = self._admit(rows, deadline, enqueue=False)
            self._run_inline([request])
            return request.future.result()
        request = self._admit(rows, deadline)
        try:
            return await request.future
        except asyncio.CancelledError:
            self._withdraw(request)
            raise

    def run_now(self, rows: np.ndarray, deadline: float | None = None) -> Outputs | None:
        """``rows``' outputs, run at once on the calling thread (the event loop's), when the
        batcher is idle with nothing queued and the run is small enough for the loop
        (``_fits_inline``); otherwise None, and the caller submits. A batch of one without the
        coroutines, request record, future and result record of ``submit_with_stats``.

        A recording span (a sampled request) gets here what ``submit_with_stats``'s caller
        would put on it (``record_batch_stats``: the batch's id, size and a wait of 0), and a
        run that turned out slow its late batch span, linked both ways. Full trace detail wants
        every batch's span from its start: such a call submits.

        The run's CPU time (two ``thread_time`` system calls, whose after-effects on the
        caches cost more than the calls) is read on a run bigger than any the loop has timed,
        then on one run in ``LEARN_EVERY``: enough for ``_fits_inline`` to follow the model
        (docs/perf/2026-11-30-servicer-stages.md)."""
        if self._running or self._pending or self._closed or rows.ndim != 2:
            return None
        n = rows.shape[0]
        span = trace.get_current_span()
        recording = span.is_recording()
        # A size declined here is decided again by ``submit_with_stats``: in the band where the
        # loop is retried, that doubles the retries (one in LOOP_RETRY_EVERY / 2 decisions).
        if n == 0 or (recording and self._trace_detail.full) or not self._fits_inline(n):
            return None
        if self.gather_delay_s and self._gathers():
            return None
        if deadline is not None:
            self._refuse_if_late(deadline, time.monotonic())
        batch_id = next(self._batch_ids)
        on_batch = self._on_batch
        try:
            if n > self._largest_loop_timed or next(self._learn_turns) % LEARN_EVERY == 0:
                started = time.perf_counter()
                outputs, compute_s = _run_one(self._run_batch, rows, self._cpu_scale)
                run_s = time.perf_counter() - started
                self._learn(n, compute_s, on_loop=True)
            elif on_batch is not None or recording:
                started = time.perf_counter()
                outputs = _checked(self._run_batch(rows), n)
                run_s = time.perf_counter() - started
            else:
                outputs, run_s = _checked(self._run_batch(rows), n), 0.0
        except Exception:  # the model's error, for the caller to see (gateway maps it)
            self._stats.failed_batches += 1
            raise
        stats = self._stats
        stats.batches += 1
        stats.rows += n
        if on_batch is not None:
            on_batch(n, run_s, [0.0])  # it found the batcher idle: no wait
        if recording:
            self._record_run_now(span, batch_id, n, run_s)
        return outputs

    def _record_run_now(self, span: Span, batch_id: int, n: int, run_s: float) -> None:
        """What a sampled request's span gets from a ``run_now`` run: as ``_complete`` and the
        served model give a batch of one that ran at once, without the request record."""
        batch_context = None
        if self._trace_detail.keeps_stage(run_s):
            end_ns = time.time_ns()
            batch_context = late_batch_span(
                self._tracer,
                [span.get_span_context()],
                f"batch {self.name}",
                start_ns=end_ns - round(run_s * 1e9),
                end_ns=end_ns,
                attributes={"leadgw.batch.id": batch_id, "leadgw.batch.size": n},
            )
        record_batch_stats(
            span, queue_wait_s=0.0, batch_size=n, batch_id=batch_id, batch_context=batch_context
        )

    def _run_alone(self, rows: np.ndarray, deadline: float | None) -> BatchResult:
        """A request of no sampled trace, run now on an idle batcher: what ``_admit``,
        ``_run_inline`` and ``_complete`` do for a batch of one, without the request record,
        its future and the batch's lists (~15 µs of a batch-1 call's ~53 in the batcher,
        scripts/batcher_cost.py)."""
        arrived = time.monotonic()
        self._refuse_if_late(deadline, arrived)
        batch_id = next(self._batch_ids)
        started = time.monotonic()
        try:
            outputs, compute_s = _run_one(self._run_batch, rows, self._cpu_scale)
        except Exception:  # the model's error, for the caller to see (gateway maps it)
            self._stats.failed_batches += 1
            raise
        run_s = time.monotonic() - started
        n = rows.shape[0]
        self._learn(n, compute_s, on_loop=True)
        stats = self._stats
        stats.batches += 1
        stats.rows += n
        if self._on_batch is not None:
            self._on_batch(n, run_s, [started - arrived])
        return BatchResult(outputs, started - arrived, batch_id, n, 1, run_s, None, started, False)

    # ---- a run outside the queue ----
    # A request that is a batch by itself (hundreds of rows) and whose conversion already runs
    # on a thread of its own gains nothing from waiting for others: its model runs on that thread
    # too, in the same hop, instead of two more hops through the loop and the batcher's thread
    # (~0.5 ms of a live worker's CPU per 1,000-lead request, docs/perf/2026-11-29-one-hop.md).
    # The batcher still admits it as ``submit`` would and counts it; only the run is elsewhere.
    # Its state stays the loop's: ``run_off_queue`` touches nothing of the batcher's.

    def admit_off_queue(self, rows: int, deadline: float | None) -> OffQueueRun:
        """On the loop: refuses the run as ``submit`` would (closed, deadline passed, no room
        in the queue), else returns its record for ``run_off_queue``."""
        if self._closed:
            raise Unavailable(f"{self.name} is shutting down and accepts no new requests")
        now = time.monotonic()
        self._refuse_if_late(deadline, now)
        self._refuse_if_full(rows)
        return OffQueueRun(rows, deadline, now)

    def run_off_queue(self, run: OffQueueRun, rows: np.ndarray) -> Outputs:
        """On the caller's thread: the model's outputs for ``rows``; fills in ``run``."""
        started = time.monotonic()
        if run.deadline is not None and run.deadline <= started:
            run.outcome = "expired"
            raise DeadlineExceeded(
                f"deadline passed {(started - run.deadline) * 1e3:.1f} ms before the model ran"
            )
        run.started = started
        try:
            outputs, run.compute_s = _run_one(self._run_batch, rows, self._cpu_scale)
        except Exception:  # the model's error, for the caller to see (gateway maps it)
            run.outcome = "failed"
            raise
        run.run_s = time.monotonic() - started
        run.rows = int(rows.shape[0])
        run.outcome = "ran"
        return outputs

    def cancel_off_queue(self, run: OffQueueRun) -> None:
        """On the loop: the caller of ``run`` went away (its run, if it happens, still settles)."""
        self._stats.cancelled += 1

    def settle_off_queue(self, run: OffQueueRun) -> None:
        """On the loop, after the thread's work: counts the run as a batch of its own (or as
        expired or failed), learns its time and reports it to ``on_batch``."""
        stats = self._stats
        if run.outcome == "expired":
            stats.expired += 1
        elif run.outcome == "failed":
            stats.failed_batches += 1
        if run.outcome != "ran":
            return
        run.batch_id = next(self._batch_ids)
        self._learn(run.rows, run.compute_s, on_loop=False)
        stats.batches += 1
        stats.rows += run.rows
        if self._on_batch is not None:
            self._on_batch(run.rows, run.run_s, [run.started - run.arrived])

    def _refuse_if_full(self, n: int) -> None:
        # One request larger than the whole queue is let in alone, or it could never run.
        if self._queued_rows + n > self.max_queue_size and self._queued_rows > 0:
            self._stats.rejected += 1
            retry = max(
                MIN_RETRY_AFTER_S, self.run_time.drain(self._queued_rows, self.max_batch_size)
            )
            raise ResourceExhausted(
                f"{self.name} queue is full: {self._queued_rows} rows waiting, "
                f"{n} more would exceed {self.max_queue_size}",
                retry_after_s=retry,
            )

    def _refuse_if_late(self, deadline: float | None, now: float) -> None:
        if deadline is not None and deadline <= now:
            self._stats.expired += 1
            raise DeadlineExceeded(
                f"deadline passed {(now - deadline) * 1e3:.1f} ms before the request was queued"
            )

    def _may_run_directly(self, rows: np.ndarray) -> bool:
        if self._running or self._pending or self._closed or self.gathering:
            return False
        if np.ndim(rows) < 1 or rows.shape[0] == 0:
            return False
        return self._fits_inline(int(rows.shape[0]))

    def _gathers(self) -> bool:
        """Whether a request that found the batcher idle, small enough to run at once, waits for
        company instead (gathering, see the module docstring). Called once per such arrival."""
        now = time.monotonic()
        gap = now - self._last_arrival
        self._last_arrival = now
        if self.gathering:
            return True
        if gap < self.gather_delay_s and now >= self._next_probe:
            # A probe: this request waits; its batch decides whether gathering stays on.
            self.gathering = True
            self._gathered_requests = None
            self._next_probe = now + GATHER_PROBE_EVERY_S
            self._stats.gather_probes += 1
            return True
        return False

    def _after_gathered_batch(self, batch: list[_Request]) -> None:
        """Gathering goes on while its batches average ``GATHER_STAY_REQUESTS`` or more and
        their waits are busy (``GATHER_IDLE_SHARE``). Not ended by one lone batch: under load
        one in a few dozen finds no company by chance, and gathering would then be off until
        the next probe."""
        self._stats.gathered_batches += 1
        if not batch:
            return
        now = time.monotonic()
        waited = now - batch[0].arrived
        idle = (now - batch[-1].arrived) / waited if waited > 0 else 0.0  # in arrival order
        requests = len(batch)
        average = self._gathered_requests
        if average is None:  # the probe's batch
            average, idle_share = requests, idle
        else:
            average += GATHER_WEIGHT * (requests - average)
            idle_share = self._gathered_idle + GATHER_WEIGHT * (idle - self._gathered_idle)
        self._gathered_requests, self._gathered_idle = average, idle_share
        if average < GATHER_STAY_REQUESTS or idle_share > GATHER_IDLE_SHARE:
            self.gathering = False

    def _fits_inline(self, rows: int) -> bool:
        """Whether a run of ``rows`` rows is cheap enough for the event loop's thread.

        A model whose run time sits near ``inline_run_s`` (1,000 rows of the lead model: 200-340
        µs on the loop against a 250 µs threshold) must not settle on the loop or on the
        executor by the luck of its first runs: it did, and the same server answered 1,000-row
        ModelInfer calls in 1.0 or 1.4 ms, run after run (docs/perf/2026-11-29-column-labels.md).
        So, once a batch this big was timed on the loop, the decision rests on the runs the loop
        made, which runs on the executor or a conversion thread (sharing the cores with the
        loop, waiting for the interpreter lock) do not inflate, and it keeps such batches on the
        loop up to ``LOOP_KEEP_FACTOR`` times the threshold, so that noise around the threshold
        does not send them back and forth. A batch estimated above that, but within
        ``LOOP_RETRY_FACTOR`` of the threshold, is tried on the loop again once in
        ``LOOP_RETRY_EVERY`` decisions, so that the decision follows what a run there costs now.
        """
        if self.inline_run_s <= 0 or rows > self._largest_timed:
            return False  # until a batch this big has been timed, its estimate is not trusted
        if rows <= self._largest_loop_timed:
            estimate = self.loop_run_time.estimate(rows)
            if estimate <= LOOP_KEEP_FACTOR * self.inline_run_s:
                return True
        else:
            estimate = self.run_time.estimate(rows)
            if estimate <= self.inline_run_s:
                return True
        return (
            estimate <= LOOP_RETRY_FACTOR * self.inline_run_s
            and next(self._loop_retries) % LOOP_RETRY_EVERY == 0
        )

    def _learn(self, rows: int, compute_s: float, *, on_loop: bool) -> None:
        """Learns a run's time: ``run_time`` from every run, ``loop_run_time`` from those the
        event loop's thread made."""
        self.run_time.observe(rows, compute_s)
        if rows > self._largest_timed:
            self._largest_timed = rows
        if on_loop:
            self.loop_run_time.observe(rows, compute_s)
            if rows > self._largest_loop_timed:
                self._largest_loop_timed = rows

    def _admit(self, rows: np.ndarray, deadline: float | None, *, enqueue: bool = True) -> _Request:
        """Checks a submit (closed, shape, deadline, room) and makes its request; ``enqueue``
        queues it and wakes the worker, which a request run directly does not need."""
        if self._closed:
            raise Unavailable(f"{self.name} is shutting down and accepts no new requests")
        if np.ndim(rows) < 1 or rows.shape[0] == 0:
            raise InvalidInput(f"{self.name}: expected a [rows, features] matrix with rows > 0")
        now = time.monotonic()
        self._refuse_if_late(deadline, now)
        n = int(rows.shape[0])
        self._refuse_if_full(n)
        loop = asyncio.get_running_loop()
        request = _Request(
            rows,
            deadline,
            now,
            next(self._seq),
            loop.create_future(),
            not self._running and not self.gathering,
            span_context=current_span_context(),
            queued=enqueue,
            gathered=self.gathering,
        )
        if enqueue:
            self._pending.append(request)
            self._queued_rows += n
            if deadline is not None:
                heapq.heappush(self._deadlines, (deadline, request.seq, request))
            self._start_worker()
            self._maybe_wake(request)
        return request

    def _withdraw(self, request: _Request) -> None:
        """The caller went away: never compute queued rows; a running batch's result is dropped."""
        if request.state is _State.QUEUED:
            self._pending.remove(request)
            self._queued_rows -= request.n
            request.state = _State.DONE
            self._stats.cancelled += 1
        elif request.state is _State.RUNNING:
            self._stats.cancelled += 1

    def _start_worker(self) -> None:
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._serve(), name=f"batcher {self.name}")

    def _maybe_wake(self, request: _Request) -> None:
        """Wakes the worker only if this request can make it flush sooner than planned."""
        planned = self._sleeping_until
        if planned is None or self._wakeup is None:
            return  # a batch is running; the worker looks at the queue when it is done
        sooner = (
            planned == math.inf
            or self._queued_rows >= self.max_batch_size
            or (request.deadline is not None and self._deadline_due(request.deadline) < planned)
        )
        if sooner:
            self._wakeup.set()

    # ---- the worker ----

    async def _serve(self) -> None:
        try:
            while True:
                if not self._pending:
                    if self._closed:
                        return
                    await self._sleep_until(math.inf)
                    continue
                if not await self._wait_until_due():
                    continue
                gathered = self._pending[0].gathered
                batch = self._take_batch()
                if gathered and self.gathering:
                    self._after_gathered_batch(batch)
                if batch:
                    await self._execute(batch)
        except Exception as exc:  # a bug here must fail callers, not leave them waiting forever
            log.exception("batcher %s worker failed", self.name)
            self._fail_queued(exc)

    async def _wait_until_due(self) -> bool:
        """Sleeps until the queue should flush; False if it emptied (cancellations) meanwhile."""
        while self._pending:
            due = self._due_at()
            if due <= time.monotonic():
                return True
            await self._sleep_until(due)
        return False

    async def _sleep_until(self, due: float) -> None:
        """Sleeps until ``due`` or a wake-up. Cleared here, not before: no await separates the
        caller's look at the queue from this, so no wake-up can be lost, and a stale one (its
        request since cancelled) cannot spin the worker."""
        assert self._wakeup is not None
        self._wakeup.clear()
        self._sleeping_until = due
        try:
            if due == math.inf:
                await self._wakeup.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(due - time.monotonic()):
                        await self._wakeup.wait()
        finally:
            self._sleeping_until = None

    def _due_at(self) -> float:
        """When the queue should flush (see the module docstring for the policy)."""
        if (
            self._closed
            or self._queued_rows >= self.max_batch_size
            or self._pending[0].arrived_idle
        ):
            return -math.inf
        head = self._pending[0]
        due = head.arrived + (self.gather_delay_s if head.gathered else self.max_queue_delay_s)
        earliest = self._earliest_deadline()
        if earliest is not None:
            due = min(due, self._deadline_due(earliest))
        return due

    def _deadline_due(self, deadline: float) -> float:
        rows = min(self._queued_rows, self.max_batch_size)
        return deadline - self.run_time.estimate(rows) - self.deadline_slack_s

    def _earliest_deadline(self) -> float | None:
        if len(self._deadlines) > 2 * len(self._pending) + 64:
            # Entries of requests that left the queue are only popped once they reach the top;
            # a few far-off deadlines must not keep thousands of them alive.
            self._deadlines = [e for e in self._deadlines if e[2].state is _State.QUEUED]
            heapq.heapify(self._deadlines)
        while self._deadlines and self._deadlines[0][2].state is not _State.QUEUED:
            heapq.heappop(self._deadlines)
        return self._deadlines[0][0] if self._deadlines else None

    def _take_batch(self) -> list[_Request]:
        """Pops the next batch in arrival order, dropping requests whose deadline it would miss."""
        now = time.monotonic()
        batch: list[_Request] = []
        rows = 0
        while self._pending:
            request = self._pending[0]
            if batch and (
                rows + request.n > self.max_batch_size or not request.fits_with(batch[0])
            ):
                break
            self._pending.popleft()
            self._queued_rows -= request.n
            if request.deadline is not None and request.deadline <= now:
                self._expire(request, f"{(now - request.deadline) * 1e3:.1f} ms late")
                continue
            batch.append(request)
            rows += request.n
        estimate = self.run_time.estimate(rows)
        kept = []
        for request in batch:
            if request.deadline is not None and now + estimate > request.deadline:
                left = request.deadline - now
                self._expire(
                    request,
                    f"would be {(estimate - left) * 1e3:.1f} ms late "
                    f"(batch needs ~{estimate * 1e3:.1f} ms, {left * 1e3:.1f} ms left)",
                )
            else:
                kept.append(request)
        return kept

    def _expire(self, request: _Request, how_late: str) -> None:
        request.state = _State.DONE
        self._stats.expired += 1
        if not request.future.done():
            waited = (time.monotonic() - request.arrived) * 1e3
            request.future.set_exception(
                DeadlineExceeded(f"dropped before compute after {waited:.1f} ms queued: {how_late}")
            )

    async def _execute(self, batch: list[_Request]) -> None:
        """Runs one batch and waits for it. Callers are resolved by ``_finish``, straight from the
        executor's completion callback: a loop pass sooner than awaiting ``run_in_executor``."""
        if self._runs_inline(batch):
            self._run_inline(batch)
            return
        for request in batch:
            request.state = _State.RUNNING
        self._running = True
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[BaseException | None] = loop.create_future()
        batch_id = next(self._batch_ids)
        eager, late = self._span_plan(batch)
        with self._batch_span(batch, batch_id) if eager else nullcontext(INVALID_SPAN) as span:
            span_context = span.get_span_context() if span.is_recording() else None
            started = time.monotonic()
            try:
                job = self._executor.submit(
                    _run_and_split,
                    self._run_batch,
                    [request.rows for request in batch],
                    self._cpu_scale,
                )
            except RuntimeError as exc:  # the executor was shut down under us
                self._running = False
                self._stats.failed_batches += 1
                self._settle(batch, exc)
                return
            done = partial(self._finish, batch, batch_id, started, finished, span_context, late)
            job.add_done_callback(partial(_call_in_loop, loop, done))
            try:
                error = await finished
            except asyncio.CancelledError:
                self._settle(batch, Unavailable(f"{self.name} stopped before this batch finished"))
                raise
            if error is not None and span.is_recording():
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))

    def _run_inline(self, batch: list[_Request]) -> None:
        """Runs one batch on the event loop's thread, now, and resolves its callers: what
        ``_execute`` does through the executor, with no thread, future or callback in between
        (a batch of one on an idle batcher pays for each of those on every call)."""
        batch_id = next(self._batch_ids)
        eager, late = self._span_plan(batch)
        with self._batch_span(batch, batch_id) if eager else nullcontext(INVALID_SPAN) as span:
            span_context = span.get_span_context() if span.is_recording() else None
            started = time.monotonic()
            try:
                ran = _run_and_split(
                    self._run_batch, [request.rows for request in batch], self._cpu_scale
                )
            except Exception as exc:  # the model's error, for each caller to see (gateway maps it)
                self._stats.failed_batches += 1
                self._settle(batch, exc)
                if span.is_recording():
                    span.record_exception(exc)
                    span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                return
            self._complete(batch, batch_id, started, span_context, late, ran, on_loop=True)

    def _span_plan(self, batch: list[_Request]) -> tuple[bool, bool]:
        """Whether the batch gets its span now (``eager``) or only if its run turns out slow
        (``late``). One batch serves many requests, each in its own trace: its span links to all
        of them. No span at all when none of them is sampled (tracing off costs nothing here).
        Lean tracing gives a batch of one request a span only if its run is slow."""
        traced = False
        for request in batch:
            context = request.span_context
            if context is not None and context.trace_flags.sampled:
                traced = True
                break
        eager = traced and (self._trace_detail.full or len(batch) > 1)
        return eager, traced and not eager

    def _batch_span(self, batch: list[_Request], batch_id: int) -> Any:
        return batch_span(
            self._tracer,
            [request.span_context for request in batch],
            name=f"batch {self.name}",
            attributes={
                "leadgw.batch.id": batch_id,
                "leadgw.batch.size": sum(request.n for request in batch),
            },
        )

    def _late_span(
        self, batch: list[_Request], batch_id: int, started: float, run_s: float, rows: int
    ) -> SpanContext | None:
        to_epoch_ns = time.time_ns() - time.monotonic_ns()
        start_ns = round(started * 1e9) + to_epoch_ns
        return late_batch_span(
            self._tracer,
            [request.span_context for request in batch],
            f"batch {self.name}",
            start_ns=start_ns,
            end_ns=start_ns + round(run_s * 1e9),
            attributes={"leadgw.batch.id": batch_id, "leadgw.batch.size": rows},
        )

    def _runs_inline(self, batch: list[_Request]) -> bool:
        """Whether to run this batch on the event loop instead of the executor.

        The hop to the executor thread and back (two thread wake-ups, two GIL hand-offs, a
        self-pipe write) costs 100-300 µs on a busy 2-core box, far more than the lead model's
        run on a small batch (7 µs for one row, ~200 µs for 1,000). Only batches whose learned
        run time is under ``inline_run_s`` run inline (``_fits_inline``); until a batch of at
        least this size has been timed, the estimate is not trusted and the batch goes to the
        executor.
        """
        return self._fits_inline(sum(request.n for request in batch))

    def _finish(
        self,
        batch: list[_Request],
        batch_id: int,
        started: float,
        finished: asyncio.Future[BaseException | None],
        span_context: SpanContext | None,
        late_span: bool,
        job: Future[_Ran],
    ) -> None:
        """On the loop, once the executor has run the batch: resolves its callers, then wakes
        ``_execute`` with the batch's error (None when it ran)."""
        self._running = False
        error: BaseException | None = None
        try:
            try:
                ran = job.result()
            except Exception as exc:  # the model's error, for each caller to see (gateway maps it)
                error = exc
                self._stats.failed_batches += 1
                self._settle(batch, exc)
            else:
                self._complete(
                    batch, batch_id, started, span_context, late_span, ran, on_loop=False
                )
        finally:
            if not finished.done():
                finished.set_result(error)

    def _complete(
        self,
        batch: list[_Request],
        batch_id: int,
        started: float,
        span_context: SpanContext | None,
        late_span: bool,
        ran: _Ran,
        *,
        on_loop: bool,
    ) -> None:
        """A batch that ran (``on_loop``: on the event loop's thread): learn its time, count it,
        and give each caller its outputs."""
        per_caller, compute_s = ran
        run_s = time.monotonic() - started
        total = 0
        for request in batch:
            total += request.n
        # The model's own time, not run_s: learned with the executor hop in it (100-300 µs
        # on a busy machine, against a 7 µs run), a cheap model looks too slow to run
        # inline, so every batch takes the hop again and the estimate never comes down.
        self._learn(total, compute_s, on_loop=on_loop)
        self._stats.batches += 1
        self._stats.rows += total
        if self._on_batch is not None:
            self._on_batch(total, run_s, [started - request.arrived for request in batch])
        if late_span and self._trace_detail.keeps_stage(run_s):
            span_context = self._late_span(batch, batch_id, started, run_s, total)
        callers = len(batch)
        for request, outputs in zip(batch, per_caller, strict=True):
            request.state = _State.DONE
            if not request.future.done():
                request.future.set_result(
                    BatchResult(
                        outputs=outputs,
                        queue_wait_s=started - request.arrived,
                        batch_id=batch_id,
                        batch_size=total,
                        batch_requests=callers,
                        run_s=run_s,
                        batch_span_context=span_context,
                        started=started,
                        queued=request.queued,
                    )
                )

    @staticmethod
    def _settle(batch: list[_Request], error: BaseException) -> None:
        for request in batch:
            request.state = _State.DONE
            if not request.future.done():
                request.future.set_exception(error)

    def _fail_queued(self, error: BaseException) -> None:
        queued = list(self._pending)
        self._pending.clear()
        self._queued_rows = 0
        self._settle(queued, error)

    # ---- closing ----

    async def close(self) -> None:
        """Refuses new submits (UNAVAILABLE), runs what is queued, then stops the executor.

        If ``close`` itself is cancelled, queued callers get UNAVAILABLE instead.
        """
        self._closed = True
        worker = self._worker
        try:
            if worker is not None and not worker.done():
                if self._wakeup is not None:
                    self._wakeup.set()
                await asyncio.shield(worker)
        except asyncio.CancelledError:
            if worker is not None:
                worker.cancel()
            self._fail_queued(Unavailable(f"{self.name} closed before this request ran"))
            raise
        finally:
            if self._owns_executor:
                self._executor.shutdown(wait=False, cancel_futures=True)


def _call_in_loop(
    loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any
) -> None:
    """From the executor's thread, hands a completion back to the loop."""
    with contextlib.suppress(RuntimeError):  # the loop closed while the batch ran: nobody waits
        loop.call_soon_threadsafe(callback, *args)


def _run_one(run_batch: BatchFn, batch: np.ndarray, cpu_scale: float) -> tuple[Outputs, float]:
    """Runs one batch on this thread: its outputs, checked to have a row per input row, and the
    run's own time, which is what ``RunTimeModel`` learns (see ``_complete``)."""
    started, started_cpu = time.perf_counter(), time.thread_time()
    outputs = run_batch(batch)
    cpu_s = time.thread_time() - started_cpu
    # The wall time also counts waiting to get the interpreter lock back when the model returns
    # (a busy event loop or span exporter can hold it for its whole 5 ms switch interval) and
    # being preempted: one such wait, learned as run time, would send a 7 µs model's batches to
    # the executor, where the same waits keep the estimate high for good. This thread's CPU time
    # counts neither. A model that computes on this thread alone (``cpu_scale`` 1: ONNX Runtime
    # with one intra-op thread) ran for exactly its CPU time, wherever it ran: learned so, a
    # 1,000-row batch near ``inline_run_s`` no longer settles on the loop or on the executor by
    # the luck of its first runs (executor runs wait more, and their waits kept them there;
    # docs/perf/2026-11-29-column-labels.md). For a runtime that may wait on its own threads,
    # twice the CPU time (``cpu_scale`` 2), with the wall time as the cap.
    compute_s = min(time.perf_counter() - started, cpu_scale * cpu_s)
    return _checked(outputs, batch.shape[0]), compute_s


def _checked(outputs: Outputs, total: int) -> Outputs:
    """``outputs``, once each is seen to have ``total`` rows first."""
    for name, value in outputs.items():
        # An ndarray's own shape: np.shape() is a Python-level dispatch, per output per batch.
        shape = value.shape if isinstance(value, np.ndarray) else np.shape(value)
        if not shape or shape[0] != total:
            raise RuntimeError(f"output {name!r} has shape {shape}; expected {total} rows first")
    return outputs


def _run_and_split(run_batch: BatchFn, inputs: list[np.ndarray], cpu_scale: float) -> _Ran:
    """In the executor: concatenate once, run, give each caller a copy of its rows. Also returns
    the run's own time (``_run_one``)."""
    batch = inputs[0] if len(inputs) == 1 else np.concatenate(inputs)
    outputs, compute_s = _run_one(run_batch, batch, cpu_scale)
    if len(inputs) == 1:
        return [outputs], compute_s  # the whole batch is this one caller's: nothing to share
    bounds = np.cumsum([0] + [len(rows) for rows in inputs])
    # Copies, not views: a caller may write to its arrays, and a view would keep the whole
    # batch's outputs alive as long as any one caller holds its part.
    per_caller = [
        {name: np.array(value[start:end]) for name, value in outputs.items()}
        for start, end in itertools.pairwise(bounds)
    ]
    return per_caller, compute_s
