"""The batch span shape: one batch span linked to every request it served, request spans
recording their queue wait and batch size, as a batcher task in its own asyncio task does it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from gateway.telemetry import batch_span, current_span_context, record_batch_stats
from tests.gateway.telemetry.telemetry_helpers import TRACER, SpanRecorder


@dataclass
class Stats:
    queue_wait_s: float
    batch_size: int
    batch_id: int
    batch_context: SpanContext


class TinyBatcher:
    """Just enough of a batcher: requests queue up, one task runs them as one batch."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._queue: asyncio.Queue[tuple[SpanContext | None, asyncio.Future[Stats]]] = (
            asyncio.Queue()
        )
        self._task: asyncio.Task[None] | None = None

    async def submit(self) -> Stats:
        if self._task is None:
            # Created inside the first request's span: the task inherits that context, which is
            # exactly what batch_span must not mistake for the batch's parent.
            self._task = asyncio.create_task(self._run())
        future: asyncio.Future[Stats] = asyncio.get_running_loop().create_future()
        await self._queue.put((current_span_context(), future))
        return await future

    async def _run(self) -> None:
        items = [await self._queue.get() for _ in range(self._size)]
        tracer = trace.get_tracer(TRACER)
        contexts = [c for c, _ in items]
        with (
            batch_span(tracer, contexts, attributes={"leadgw.batch.id": 7}) as span,
            tracer.start_as_current_span("onnx run"),
        ):
            await asyncio.sleep(0)
        for _, future in items:
            future.set_result(Stats(0.002, len(items), 7, span.get_span_context()))


async def request(batcher: TinyBatcher, name: str) -> None:
    with trace.get_tracer(TRACER).start_as_current_span(name) as span:
        stats = await batcher.submit()
        record_batch_stats(
            span,
            queue_wait_s=stats.queue_wait_s,
            batch_size=stats.batch_size,
            batch_id=stats.batch_id,
            batch_context=stats.batch_context,
        )


async def test_batch_span_links_every_request_and_requests_link_back(spans: SpanRecorder) -> None:
    batcher = TinyBatcher(size=3)
    await asyncio.gather(*(request(batcher, f"request {i}") for i in range(3)))

    requests = sorted((s for s in spans.finished() if s.name.startswith("request")), key=str)
    batch, onnx = spans.named("batch"), spans.named("onnx run")
    request_contexts = {(r.context.trace_id, r.context.span_id) for r in requests}

    # The batch lives in the trace of the request it was parented on, and links to all of them.
    assert batch.parent is not None
    assert (batch.parent.trace_id, batch.parent.span_id) in request_contexts
    assert {(link.context.trace_id, link.context.span_id) for link in batch.links} == (
        request_contexts
    )
    assert batch.attributes == {"leadgw.batch.requests": 3, "leadgw.batch.id": 7}
    assert onnx.parent is not None and onnx.parent.span_id == batch.context.span_id

    for span in requests:
        assert span.attributes == {
            "leadgw.batch.id": "7",
            "leadgw.batch.size": 3,
            "leadgw.batch.queue_wait_ms": 2.0,
        }
        assert [link.context.span_id for link in span.links] == [batch.context.span_id]


def test_batch_of_unsampled_requests_records_nothing(spans: SpanRecorder) -> None:
    unsampled = SpanContext(0xABC, 0xDEF, is_remote=False, trace_flags=TraceFlags(0))
    tracer = trace.get_tracer(TRACER)
    with batch_span(tracer, [unsampled, None]) as span:
        assert not span.is_recording()
        assert span.get_span_context().trace_id == 0xABC
    record_batch_stats(
        NonRecordingSpan(unsampled), queue_wait_s=0.1, batch_size=1, batch_id=1
    )  # a no-op, not an error

    assert spans.finished() == []


def test_batch_without_request_contexts_is_a_root(spans: SpanRecorder) -> None:
    tracer = trace.get_tracer(TRACER)
    with tracer.start_as_current_span("unrelated"), batch_span(tracer, []):
        pass

    batch = spans.named("batch")
    assert batch.parent is None
    assert batch.links == ()
