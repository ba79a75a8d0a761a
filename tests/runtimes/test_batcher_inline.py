"""Inline runs: a batcher with ``inline_run_s`` runs small, already-timed batches on the event
loop's thread, and callers see exactly what the executor path gives them."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from runtimes.batcher import LOOP_RETRY_EVERY, DynamicBatcher
from runtimes.errors import DeadlineExceeded
from runtimes.tracing import FULL, TraceDetail

pytestmark = pytest.mark.timeout(30)


class Recorder:
    """A fast batch function that notes which thread ran each batch."""

    def __init__(self) -> None:
        self.threads: list[int] = []
        self.sizes: list[int] = []
        self.fail = False

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        self.threads.append(threading.get_ident())
        self.sizes.append(len(x))
        if self.fail:
            raise ValueError("model blew up")
        return {"sum": x.sum(axis=1), "double": x * 2}


def rows(n: int, start: float) -> np.ndarray:
    return (start + np.arange(n * 3, dtype=np.float32)).reshape(n, 3)


def make(
    model: Recorder, inline_run_s: float, *, computes_on_caller: bool = False
) -> DynamicBatcher:
    return DynamicBatcher(
        model,
        max_batch_size=64,
        max_queue_delay_s=0.001,
        max_queue_size=1024,
        name="inline",
        inline_run_s=inline_run_s,
        computes_on_caller=computes_on_caller,
    )


async def test_small_batches_run_on_the_loop_after_one_is_timed() -> None:
    model = Recorder()
    batcher = make(model, inline_run_s=10.0)
    loop_thread = threading.get_ident()
    try:
        first = await batcher.submit(rows(4, 0.0))  # untimed: goes to the executor
        later = [await batcher.submit(rows(n, 100.0 * n)) for n in (1, 2, 4)]
        bigger = await batcher.submit(rows(8, 5000.0))  # larger than any timed batch
        again = await batcher.submit(rows(8, 6000.0))
    finally:
        await batcher.close()
    assert model.threads[0] != loop_thread
    assert model.threads[1:4] == [loop_thread] * 3
    assert model.threads[4] != loop_thread
    assert model.threads[5] == loop_thread
    for out, x in zip(
        [first, *later, bigger, again],
        [
            rows(4, 0.0),
            rows(1, 100.0),
            rows(2, 200.0),
            rows(4, 400.0),
            rows(8, 5000.0),
            rows(8, 6000.0),
        ],
        strict=True,
    ):
        np.testing.assert_array_equal(out["sum"], x.sum(axis=1))
        np.testing.assert_array_equal(out["double"], x * 2)
    assert batcher.stats.batches == 6


async def test_an_idle_cheap_request_runs_at_once_in_its_own_task() -> None:
    model = Recorder()
    batcher = make(model, inline_run_s=10.0)
    try:
        await batcher.submit(rows(16, 0.0))  # timed on the executor first
        inputs = [rows(n, 1000.0 * i) for i, n in enumerate([1, 3, 2, 5, 1])]
        results = await asyncio.gather(*(batcher.submit_with_stats(x) for x in inputs))
    finally:
        await batcher.close()
    # Each found the batcher idle and ran at once: no waiting for company, no queue.
    assert model.sizes[1:] == [1, 3, 2, 5, 1]
    for x, result in zip(inputs, results, strict=True):
        np.testing.assert_array_equal(result.outputs["sum"], x.sum(axis=1))
        assert result.batch_requests == 1 and result.batch_size == len(x)
    assert len({r.batch_id for r in results}) == len(inputs)


async def test_a_direct_run_is_counted_learned_and_reported_as_a_batch_of_one() -> None:
    """An untraced request that finds the batcher idle takes the shortest path (no request record,
    no future); it must still count, teach the run-time model, reach the batch metrics and
    describe itself as the queued path does."""
    model = Recorder()
    reported: list[tuple[int, float, list[float]]] = []
    batcher = DynamicBatcher(
        model,
        max_batch_size=64,
        max_queue_delay_s=0.001,
        max_queue_size=1024,
        inline_run_s=10.0,
        on_batch=lambda n, run_s, waits: reported.append((n, run_s, waits)),
    )
    loop_thread = threading.get_ident()
    try:
        await batcher.submit(rows(4, 0.0))  # timed on the executor first
        learned = batcher.run_time.estimate(2)
        before = time.monotonic()
        first = await batcher.submit_with_stats(rows(2, 10.0))
        second = await batcher.submit_with_stats(rows(3, 20.0))
    finally:
        await batcher.close()
    assert model.threads[1:] == [loop_thread, loop_thread]
    np.testing.assert_array_equal(first.outputs["double"], rows(2, 10.0) * 2)
    np.testing.assert_array_equal(second.outputs["sum"], rows(3, 20.0).sum(axis=1))
    for result, n in ((first, 2), (second, 3)):
        assert (result.batch_size, result.batch_requests, result.queued) == (n, 1, False)
        assert result.batch_span_context is None
        assert before <= result.started and 0.0 <= result.queue_wait_s < 1.0
        assert 0.0 <= result.run_s < 1.0
    assert second.batch_id == first.batch_id + 1
    stats = batcher.stats
    assert (stats.batches, stats.rows, stats.failed_batches) == (3, 9, 0)
    assert [n for n, _, _ in reported] == [4, 2, 3]
    assert all(len(waits) == 1 and waits[0] >= 0.0 for _, _, waits in reported)
    assert batcher.run_time.estimate(2) != learned  # the direct runs were learned


async def test_a_direct_run_past_its_deadline_is_refused_without_compute() -> None:
    model = Recorder()
    batcher = make(model, inline_run_s=10.0)
    try:
        await batcher.submit(rows(2, 0.0))  # timed: the next one would run directly
        with pytest.raises(DeadlineExceeded, match="before the request was queued"):
            await batcher.submit(rows(1, 5.0), deadline=time.monotonic() - 0.01)
        after = await batcher.submit(rows(1, 7.0))
    finally:
        await batcher.close()
    assert model.sizes == [2, 1]  # the late one never reached the model
    np.testing.assert_array_equal(after["sum"], rows(1, 7.0).sum(axis=1))
    assert batcher.stats.expired == 1


async def test_requests_arriving_while_a_batch_runs_still_merge() -> None:
    model = Recorder()
    batcher = make(model, inline_run_s=10.0)
    release = threading.Event()
    slow_started = threading.Event()

    def slow_then_fast(x: np.ndarray) -> dict[str, np.ndarray]:
        if len(x) == 32:  # untimed size: runs on the executor, and holds it
            slow_started.set()
            release.wait(5)
        return model(x)

    batcher._run_batch = slow_then_fast  # the batch function is the model boundary here
    try:
        running = asyncio.ensure_future(batcher.submit(rows(32, 0.0)))
        await asyncio.to_thread(slow_started.wait, 5)
        queued = [asyncio.ensure_future(batcher.submit(rows(n, 100.0 * n))) for n in (1, 2, 3)]
        await asyncio.sleep(0)
        release.set()
        outs = await asyncio.gather(*queued)
        await running
    finally:
        await batcher.close()
    assert model.sizes == [32, 6]  # the three that queued behind it ran as one batch
    for n, out in zip((1, 2, 3), outs, strict=True):
        np.testing.assert_array_equal(out["sum"], rows(n, 100.0 * n).sum(axis=1))


async def test_a_direct_run_error_reaches_its_caller() -> None:
    model = Recorder()
    batcher = make(model, inline_run_s=10.0)
    try:
        await batcher.submit(rows(4, 0.0))
        model.fail = True
        with pytest.raises(ValueError, match="model blew up"):
            await batcher.submit(rows(1, 10.0))
        model.fail = False
        after = await batcher.submit(rows(1, 30.0))
    finally:
        await batcher.close()
    np.testing.assert_array_equal(after["sum"], rows(1, 30.0).sum(axis=1))
    assert batcher.stats.failed_batches == 1


async def test_off_by_default_and_for_slow_batches() -> None:
    model = Recorder()
    default = DynamicBatcher(model, max_batch_size=64, max_queue_delay_s=0.001, max_queue_size=64)
    slow = make(model, inline_run_s=1e-12)  # no real batch runs that fast
    loop_thread = threading.get_ident()
    try:
        for batcher in (default, slow):
            for n in (4, 1, 2):
                await batcher.submit(rows(n, 0.0))
    finally:
        await default.close()
        await slow.close()
    assert loop_thread not in model.threads


class SlowHopExecutor(ThreadPoolExecutor):
    """An executor whose hand-off is slow (a busy machine's thread wake-ups), not its work."""

    def __init__(self, hop_s: float) -> None:
        super().__init__(max_workers=1)
        self.hop_s = hop_s
        self.submitted = 0

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        self.submitted += 1

        def late() -> object:
            time.sleep(self.hop_s)
            return fn(*args, **kwargs)

        return super().submit(late)


async def test_the_executor_hop_is_not_learned_as_run_time() -> None:
    """A slow hop to the executor must not make a cheap model look expensive: learned that way,
    every later batch would take the hop again and keep the estimate high for good."""
    model = Recorder()
    executor = SlowHopExecutor(hop_s=0.02)
    batcher = DynamicBatcher(
        model,
        max_batch_size=64,
        max_queue_delay_s=0.001,
        max_queue_size=1024,
        name="hop",
        executor=executor,
        inline_run_s=0.005,  # far above the model's run, far below the 20 ms hop
    )
    loop_thread = threading.get_ident()
    try:
        await batcher.submit(rows(4, 0.0))  # untimed: goes to the executor, and its hop
        for n in (1, 2, 4, 3):
            await batcher.submit(rows(n, 10.0 * n))
    finally:
        await batcher.close()
        executor.shutdown()
    assert executor.submitted == 1
    assert model.threads[1:] == [loop_thread] * 4
    assert batcher.run_time.estimate(4) < 0.005


class StallsOnce(Recorder):
    """A cheap model whose first timed run returns late without using the CPU: what waiting to
    get the interpreter lock back (or being preempted) looks like from the batcher."""

    def __init__(self, stall_s: float) -> None:
        super().__init__()
        self.stall_s = stall_s

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        if len(self.threads) == 1:
            time.sleep(self.stall_s)
        return super().__call__(x)


class Busy(Recorder):
    """A model that really computes for ``busy_s`` on the calling thread."""

    def __init__(self, busy_s: float) -> None:
        super().__init__()
        self.busy_s = busy_s

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        until = time.thread_time() + self.busy_s
        while time.thread_time() < until:
            pass
        return super().__call__(x)


async def test_a_run_that_waited_is_not_learned_as_slow() -> None:
    """One late return (no CPU used) must not move a cheap model's batches off the loop."""
    model = StallsOnce(stall_s=0.05)
    batcher = make(model, inline_run_s=0.005)
    loop_thread = threading.get_ident()
    try:
        for n in (2, 2, 1, 2, 1, 2):
            await batcher.submit(rows(n, 1.0))
    finally:
        await batcher.close()
    assert model.threads[2:] == [loop_thread] * 4
    assert batcher.run_time.estimate(2) < 0.005


async def test_a_model_that_computes_long_is_learned_as_slow() -> None:
    """The other side: CPU really spent is learned, and such batches stay on the executor."""
    model = Busy(busy_s=0.02)
    batcher = make(model, inline_run_s=0.005)
    loop_thread = threading.get_ident()
    try:
        for n in (2, 2, 1, 2):
            await batcher.submit(rows(n, 1.0))
    finally:
        await batcher.close()
    assert loop_thread not in model.threads
    assert batcher.run_time.estimate(2) >= 0.015


class BusyThenWaits(Busy):
    """Computes ``busy_s`` on the calling thread, then returns ``wait_s`` late on every run: a
    model near the inline threshold whose runs on the executor wait for the interpreter lock."""

    def __init__(self, busy_s: float, wait_s: float) -> None:
        super().__init__(busy_s)
        self.wait_s = wait_s

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        outputs = super().__call__(x)
        time.sleep(self.wait_s)
        return outputs


@pytest.mark.parametrize("computes_on_caller", [True, False])
async def test_a_model_computing_on_its_caller_is_learned_by_its_cpu_time(
    computes_on_caller: bool,
) -> None:
    """A model that computes on the calling thread alone ran for its CPU time, whatever it
    waited: its 4 ms runs stay under a 6 ms threshold and run on the loop. A runtime that may
    wait on threads of its own is learned at twice its CPU time (capped by the wall time), 8 ms
    here, and stays on the executor. Learned the second way, a model near the threshold settled
    on the loop or on the executor by the luck of its first runs."""
    model = BusyThenWaits(busy_s=0.004, wait_s=0.004)
    batcher = make(model, inline_run_s=0.006, computes_on_caller=computes_on_caller)
    loop_thread = threading.get_ident()
    try:
        for n in (2, 2, 1, 2, 1):
            await batcher.submit(rows(n, 1.0))
    finally:
        await batcher.close()
    on_loop = [thread == loop_thread for thread in model.threads[1:]]
    if computes_on_caller:
        assert on_loop == [True] * 4
        assert 0.0035 <= batcher.run_time.estimate(2) < 0.006
    else:
        assert on_loop == [False] * 4
        assert batcher.run_time.estimate(2) >= 0.006


class SlowerOffTheLoop(Recorder):
    """Computes ``on_loop_s`` on the event loop's thread and ``elsewhere_s`` on any other: what
    sharing the cores with a busy loop does to a run on the executor."""

    def __init__(self, loop_thread: int, on_loop_s: float, elsewhere_s: float) -> None:
        super().__init__()
        self.loop_thread = loop_thread
        self.on_loop_s, self.elsewhere_s = on_loop_s, elsewhere_s

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        busy = self.on_loop_s if threading.get_ident() == self.loop_thread else self.elsewhere_s
        until = time.thread_time() + busy
        while time.thread_time() < until:
            pass
        return super().__call__(x)


async def forty_runs_near_threshold(
    on_loop_s: float, elsewhere_s: float
) -> tuple[list[bool], DynamicBatcher]:
    """40 submits of 2 rows to a batcher with a 5 ms threshold over a ``SlowerOffTheLoop``
    model; whether each run was on the event loop's thread, and the (closed) batcher."""
    loop_thread = threading.get_ident()
    model = SlowerOffTheLoop(loop_thread, on_loop_s=on_loop_s, elsewhere_s=elsewhere_s)
    batcher = make(model, inline_run_s=0.005, computes_on_caller=True)
    try:
        for n in range(40):
            await batcher.submit(rows(2, float(n)))
    finally:
        await batcher.close()
    return [thread == loop_thread for thread in model.threads], batcher


async def test_a_model_slower_off_the_loop_is_judged_by_its_runs_on_the_loop() -> None:
    """8 ms a run on the executor, 2 ms on the loop, a 5 ms threshold: learned from the executor
    alone it would never run on the loop. Tried there now and then, it stays there once tried."""
    on_loop, batcher = await forty_runs_near_threshold(on_loop_s=0.002, elsewhere_s=0.008)
    first = on_loop.index(True)
    assert 1 <= first <= 1 + LOOP_RETRY_EVERY
    assert all(on_loop[first:]), on_loop
    assert batcher.loop_run_time.estimate(2) < 0.005


async def test_a_run_near_the_threshold_stays_on_the_loop_once_it_ran_there() -> None:
    """6 ms a run everywhere, a 5 ms threshold: once tried on the loop, it stays there (up to
    LOOP_KEEP_FACTOR x the threshold) instead of going back and forth with the noise."""
    on_loop, _ = await forty_runs_near_threshold(on_loop_s=0.006, elsewhere_s=0.006)
    first = on_loop.index(True)
    assert 1 <= first <= 1 + LOOP_RETRY_EVERY
    assert all(on_loop[first:]), on_loop


async def test_a_model_as_slow_on_the_loop_is_only_retried_there_now_and_then() -> None:
    on_loop, batcher = await forty_runs_near_threshold(on_loop_s=0.008, elsewhere_s=0.008)
    # Each submit decides once or twice (directly, then in the worker): 40-80 decisions.
    assert 1 <= sum(on_loop) <= 80 // LOOP_RETRY_EVERY
    assert batcher.loop_run_time.estimate(2) > 0.005


async def test_a_run_far_above_the_threshold_is_never_tried_on_the_loop() -> None:
    # 12 ms: beyond LOOP_RETRY_FACTOR x 5 ms.
    on_loop, _ = await forty_runs_near_threshold(on_loop_s=0.012, elsewhere_s=0.012)
    assert not any(on_loop)


@pytest.mark.parametrize("inline_run_s", [0.0, 10.0])
@pytest.mark.parametrize("bad", ["scalar", "short"])
async def test_an_output_without_a_row_per_input_row_fails_its_caller(
    inline_run_s: float, bad: str
) -> None:
    # The outputs' shape check, on the executor (0.0) and inline (10.0): a scalar output, or one
    # with fewer rows than the batch, is the model's error, not a result to split.
    model = Recorder()
    batcher = make(model, inline_run_s=inline_run_s)
    try:
        await batcher.submit(rows(2, 0.0))  # timed: later small batches may run inline
        real = model.__call__

        def broken(x: np.ndarray) -> dict[str, np.ndarray]:
            out = real(x)
            out["sum"] = np.float32(1.0) if bad == "scalar" else out["sum"][:-1]  # type: ignore[assignment]
            return out

        batcher._run_batch = broken
        with pytest.raises(RuntimeError, match=r"output 'sum' has shape \(.*\); expected 1 rows"):
            await batcher.submit(rows(1, 10.0))
        batcher._run_batch = model
        after = await batcher.submit(rows(1, 30.0))
    finally:
        await batcher.close()
    np.testing.assert_array_equal(after["sum"], rows(1, 30.0).sum(axis=1))
    assert batcher.stats.failed_batches == 1


# ---- run_now: the served model's first try, without submitting ----


async def test_run_now_runs_an_idle_batchers_timed_size_at_once_and_declines_the_rest() -> None:
    model = Recorder()
    batcher = make(model, inline_run_s=10.0)
    loop_thread = threading.get_ident()
    try:
        assert batcher.run_now(rows(2, 0.0)) is None  # no run of 2 rows timed yet
        await batcher.submit(rows(2, 0.0))  # timed, on the executor
        out = batcher.run_now(rows(1, 10.0))
        assert out is not None
        np.testing.assert_array_equal(out["double"], rows(1, 10.0) * 2)
        assert model.threads[-1] == loop_thread
        assert batcher.run_now(rows(4, 0.0)) is None  # bigger than any timed run
        assert batcher.run_now(np.zeros(3, dtype=np.float32)) is None  # not a matrix
        queued = asyncio.ensure_future(batcher.submit(rows(8, 20.0)))  # untimed: queued
        await asyncio.sleep(0)  # it is queued (or running): not idle
        assert batcher.run_now(rows(1, 30.0)) is None
        await queued
    finally:
        await batcher.close()
    assert batcher.run_now(rows(1, 40.0)) is None  # closed
    stats = batcher.stats
    assert (stats.batches, stats.rows) == (3, 11)


def recorded_tracer() -> tuple[Any, InMemorySpanExporter]:
    """A tracer of an SDK provider of its own, whose finished spans the exporter keeps."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test"), exporter


def traced(detail: TraceDetail, tracer: Any) -> DynamicBatcher:
    """A batcher "m/1" that runs timed sizes inline, with its spans from ``tracer``."""
    return DynamicBatcher(
        Recorder(),
        max_batch_size=64,
        max_queue_delay_s=0.001,
        max_queue_size=1024,
        name="m/1",
        inline_run_s=10.0,
        trace_detail=detail,
        tracer=tracer,
    )


@pytest.mark.parametrize("slow", [False, True])
async def test_run_now_gives_a_recording_span_the_batchs_record(slow: bool) -> None:
    """A sampled request that finds the batcher idle runs at once too; its span gets the
    batch's id, size and a wait of 0, and a slow run its late batch span, linked both ways."""
    tracer, exporter = recorded_tracer()
    batcher = traced(TraceDetail(slow_s=0.0 if slow else 1e6), tracer)
    try:
        await batcher.submit(rows(2, 0.0))  # timed
        with tracer.start_as_current_span("request") as span:
            out = batcher.run_now(rows(2, 1.0))
            request_context = span.get_span_context()
    finally:
        await batcher.close()
    assert out is not None
    np.testing.assert_array_equal(out["sum"], rows(2, 1.0).sum(axis=1))
    finished = {s.name: s for s in exporter.get_finished_spans()}
    request = finished["request"]
    assert request.attributes["leadgw.batch.size"] == 2
    assert request.attributes["leadgw.batch.queue_wait_ms"] == 0.0
    assert request.attributes["leadgw.batch.id"] == "2"  # the second batch
    if not slow:
        assert sorted(finished) == ["request"] and request.links == ()
        return
    batch = finished["batch m/1"]
    assert batch.parent.span_id == request_context.span_id
    assert [link.context.span_id for link in batch.links] == [request_context.span_id]
    assert [link.context.span_id for link in request.links] == [batch.context.span_id]
    assert batch.attributes["leadgw.batch.id"] == 2
    assert batch.attributes["leadgw.batch.size"] == 2
    assert batch.attributes["leadgw.batch.requests"] == 1
    assert request.start_time <= batch.start_time <= batch.end_time <= request.end_time


async def test_run_now_declines_a_recording_span_in_full_trace_detail() -> None:
    """Full detail wants every batch's span from its start: such a call submits."""
    tracer, _ = recorded_tracer()
    batcher = traced(FULL, tracer)
    try:
        await batcher.submit(rows(1, 0.0))
        with tracer.start_as_current_span("request"):
            assert batcher.run_now(rows(1, 1.0)) is None
        assert batcher.run_now(rows(1, 1.0)) is not None  # an untraced call runs
    finally:
        await batcher.close()


async def test_run_now_reads_cpu_time_on_a_sizes_first_run_then_one_in_learn_every() -> None:
    from runtimes.batcher import LEARN_EVERY

    calls: list[tuple[int, float, list[float]]] = []
    batcher = DynamicBatcher(
        Recorder(),
        max_batch_size=64,
        max_queue_delay_s=0.001,
        max_queue_size=1024,
        inline_run_s=10.0,
        on_batch=lambda n, run_s, waits: calls.append((n, run_s, waits)),
    )
    try:
        await batcher.submit(rows(3, 0.0))  # timed on the executor: 3 rows may run inline
        learned = batcher.loop_run_time._samples
        assert batcher.run_now(rows(3, 0.0)) is not None  # the loop's first run of 3 rows
        assert batcher.loop_run_time._samples == learned + 1
        for i in range(2 * LEARN_EVERY):
            assert batcher.run_now(rows(3, float(i))) is not None
    finally:
        await batcher.close()
    assert batcher.loop_run_time._samples == learned + 3
    # Every run is reported, timed, as a batch of its own that did not wait.
    assert len(calls) == 2 + 2 * LEARN_EVERY
    assert all(n == 3 and run_s > 0 and waits == [0.0] for n, run_s, waits in calls[1:])


async def test_run_now_refuses_a_passed_deadline_and_counts_a_failed_model() -> None:
    model = Recorder()
    batcher = make(model, inline_run_s=10.0)
    try:
        await batcher.submit(rows(1, 0.0))
        ran = len(model.sizes)
        with pytest.raises(DeadlineExceeded, match="before the request was queued"):
            batcher.run_now(rows(1, 0.0), deadline=time.monotonic() - 0.01)
        assert len(model.sizes) == ran  # the model did not run
        model.fail = True
        with pytest.raises(ValueError, match="model blew up"):
            batcher.run_now(rows(1, 0.0))
    finally:
        await batcher.close()
    assert batcher.stats.expired == 1
    assert batcher.stats.failed_batches == 1
