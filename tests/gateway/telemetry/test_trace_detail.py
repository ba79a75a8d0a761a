"""Which batch spans the real batcher makes at each trace detail: lean keeps a span for batches
that served several requests or ran slow; full keeps one for every sampled batch. The model is a
real numpy computation held on a gate, so requests are ordered by events, not by timing."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable

import numpy as np
import pytest
from opentelemetry import trace

from runtimes.batcher import BatchResult, DynamicBatcher
from runtimes.tracing import FULL, LEAN, TraceDetail
from tests.gateway.telemetry.telemetry_helpers import TRACER, SpanRecorder

pytestmark = pytest.mark.timeout(30)

NEVER_SLOW = TraceDetail(slow_s=1e6)
ALWAYS_SLOW = TraceDetail(slow_s=0.0)


class GatedModel:
    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        self.started.set()
        self.gate.wait(10)
        return {"sum": x.sum(axis=1)}


@pytest.fixture
async def make() -> AsyncIterator[Callable[[TraceDetail], tuple[DynamicBatcher, GatedModel]]]:
    made: list[tuple[DynamicBatcher, GatedModel]] = []

    def factory(
        detail: TraceDetail, inline_run_s: float = 0.0
    ) -> tuple[DynamicBatcher, GatedModel]:
        model = GatedModel()
        batcher = DynamicBatcher(
            model,
            name="m/1",
            max_batch_size=64,
            max_queue_delay_s=0.001,
            max_queue_size=1024,
            trace_detail=detail,
            inline_run_s=inline_run_s,
        )
        made.append((batcher, model))
        return batcher, model

    yield factory
    for batcher, model in made:
        model.gate.set()
        await batcher.close()


async def traced_submit(batcher: DynamicBatcher, name: str) -> tuple[BatchResult, int]:
    """Submits one row inside a sampled span: the result and that span's id."""
    with trace.get_tracer(TRACER).start_as_current_span(name) as span:
        result = await batcher.submit_with_stats(np.ones((1, 3), dtype=np.float32))
        return result, span.get_span_context().span_id


def batch_spans(spans: SpanRecorder) -> list:
    return [s for s in spans.finished() if s.name == "batch m/1"]


@pytest.mark.parametrize(("detail", "kept"), [(NEVER_SLOW, False), (FULL, True)])
async def test_a_batch_of_one_request_has_a_span_only_in_full_detail(
    make, spans: SpanRecorder, detail: TraceDetail, kept: bool
) -> None:
    batcher, _ = make(detail)
    result, request_span_id = await traced_submit(batcher, "request")
    if not kept:
        await batcher.close()  # the batch, had it a span, has ended it
        assert batch_spans(spans) == []
        assert result.batch_span_context is None
        return
    # The batcher's task ends the span after it has resolved the request.
    (batch,) = await spans.wait_for("batch m/1")
    assert batch.parent.span_id == request_span_id
    assert result.batch_span_context == batch.context


async def test_lean_detail_keeps_the_span_of_a_batch_that_served_several_requests(
    make, spans: SpanRecorder
) -> None:
    batcher, model = make(NEVER_SLOW)
    model.gate.clear()
    first = asyncio.create_task(traced_submit(batcher, "first"))
    assert await asyncio.to_thread(model.started.wait, 5)
    # These two queue while the first batch runs, so they run together next.
    later = [asyncio.create_task(traced_submit(batcher, name)) for name in ("second", "third")]
    await asyncio.sleep(0.01)
    model.gate.set()
    (first_result, _), *rest = await asyncio.gather(first, *later)
    (batch,) = await spans.wait_for("batch m/1")
    assert first_result.batch_span_context is None  # alone and not slow
    assert batch.attributes["leadgw.batch.requests"] == 2
    linked = {link.context.span_id for link in batch.links}
    for result, span_id in rest:
        assert result.batch_span_context == batch.context
        assert span_id in linked


async def test_lean_detail_records_a_slow_batch_of_one_after_the_fact(
    make, spans: SpanRecorder
) -> None:
    batcher, _ = make(ALWAYS_SLOW)
    result, request_span_id = await traced_submit(batcher, "request")
    (batch,) = batch_spans(spans)
    request_span = next(s for s in spans.finished() if s.name == "request")
    assert batch.parent.span_id == request_span_id
    assert [link.context.span_id for link in batch.links] == [request_span_id]
    assert result.batch_span_context == batch.context
    assert batch.attributes["leadgw.batch.size"] == 1
    assert request_span.start_time <= batch.start_time <= batch.end_time <= request_span.end_time
    assert batch.end_time - batch.start_time == pytest.approx(result.run_s * 1e9, abs=1000)


@pytest.mark.parametrize(("detail", "kept"), [(NEVER_SLOW, False), (ALWAYS_SLOW, True)])
async def test_a_sampled_request_run_directly_keeps_its_slow_batch_span(
    make, spans: SpanRecorder, detail: TraceDetail, kept: bool
) -> None:
    """On an idle batcher that runs small batches on the loop, an untraced request takes a
    shorter path than a sampled one; the sampled one must still get its late batch span."""
    batcher, _ = make(detail, inline_run_s=10.0)
    await batcher.submit(np.ones((1, 3), dtype=np.float32))  # timed: the next runs directly
    untraced = await batcher.submit_with_stats(np.ones((1, 3), dtype=np.float32))
    result, request_span_id = await traced_submit(batcher, "request")
    assert (untraced.queued, result.queued) == (False, False)
    assert untraced.batch_span_context is None
    found = batch_spans(spans)
    if not kept:
        assert found == [] and result.batch_span_context is None
        return
    (batch,) = found  # the sampled request's only: the untraced one never gets a span
    assert [link.context.span_id for link in batch.links] == [request_span_id]
    assert result.batch_span_context == batch.context


def test_keeps_stage() -> None:
    assert not LEAN.keeps_stage(0.001)
    assert LEAN.keeps_stage(LEAN.slow_s)
    assert FULL.keeps_stage(0.0)
