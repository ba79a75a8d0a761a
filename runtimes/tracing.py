"""Helpers for the one span shape the plain tracer API does not make obvious: a batch that
serves many requests, each with its own trace.

The batch span is a child of the first *sampled* request it serves (so it shows up inside that
request's trace, and is sampled whenever any of its requests is) and links to every sampled
request span. Each request span, in turn, records its queue wait and batch size and links back
to the batch. Only OpenTelemetry is imported: ``runtimes/`` may use this module.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, NonRecordingSpan, Span, SpanContext, Tracer
from opentelemetry.util.types import AttributeValue


@dataclass(frozen=True, slots=True)
class TraceDetail:
    """Which spans a sampled request gets besides its server span.

    ``full``: every stage's span (encoding, the batch run), as an engineer chasing one request
    wants. Lean (the default): the server span alone, plus a child only where there is something
    to see: a ``queue wait`` when the request queued, the batch span when it was batched with
    other requests, and a stage's span when that stage took at least ``slow_s``. Building a span
    through the SDK costs tens of µs of CPU, about as much as scoring one lead.
    """

    full: bool = False
    slow_s: float = 0.005
    """A stage that took at least this long gets its span in lean mode (recorded afterwards,
    with its real start and end)."""

    def keeps_stage(self, took_s: float) -> bool:
        """Whether a stage that took ``took_s`` gets its own span."""
        return self.full or took_s >= self.slow_s


LEAN = TraceDetail()
FULL = TraceDetail(full=True)


def current_span_context() -> SpanContext | None:
    """The current span's context (None outside any span): capture it where a request is
    submitted to the batcher, in the request's own task."""
    span_context = trace.get_current_span().get_span_context()
    return span_context if span_context.is_valid else None


@contextmanager
def batch_span(
    tracer: Tracer,
    request_contexts: Iterable[SpanContext | None],
    name: str = "batch",
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Iterator[Span]:
    """Starts (and makes current) the span of one batch, parented and linked as described
    above. The SDK keeps at most 128 links per span (``OTEL_SPAN_LINK_COUNT_LIMIT``)."""
    parent, links, all_attributes = _batch_span_shape(request_contexts, attributes)
    with tracer.start_as_current_span(
        name, context=parent, links=links, attributes=all_attributes
    ) as span:
        yield span


def late_batch_span(
    tracer: Tracer,
    request_contexts: Iterable[SpanContext | None],
    name: str,
    *,
    start_ns: int,
    end_ns: int,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> SpanContext | None:
    """``batch_span`` recorded after the run (for a batch that turned out slow): the same parent,
    links and attributes, with the run's real start and end (``time.time_ns()`` instants). Its
    context, for requests to link to; None when it is not recorded."""
    parent, links, all_attributes = _batch_span_shape(request_contexts, attributes)
    span = tracer.start_span(
        name, context=parent, links=links, attributes=all_attributes, start_time=start_ns
    )
    span.end(end_time=end_ns)
    span_context = span.get_span_context()
    return span_context if span_context.trace_flags.sampled else None


def _batch_span_shape(
    request_contexts: Iterable[SpanContext | None],
    attributes: Mapping[str, AttributeValue] | None,
) -> tuple[Context, list[Link], dict[str, AttributeValue]]:
    contexts = [c for c in request_contexts if c is not None and c.is_valid]
    sampled = [c for c in contexts if c.trace_flags.sampled]
    # An explicit (possibly empty) parent: the batcher's task may have inherited some request's
    # context when it was created, and the batch must not silently become that request's child.
    parent_span_context = sampled[0] if sampled else (contexts[0] if contexts else None)
    parent = (
        Context()
        if parent_span_context is None
        else trace.set_span_in_context(NonRecordingSpan(parent_span_context), Context())
    )
    # Links to unsampled spans would point at traces nobody recorded.
    links = [Link(c) for c in sampled]
    all_attributes: dict[str, AttributeValue] = {"leadgw.batch.requests": len(contexts)}
    all_attributes.update(attributes or {})
    return parent, links, all_attributes


def record_batch_stats(
    span: Span,
    *,
    queue_wait_s: float,
    batch_size: int,
    batch_id: int | str,
    batch_context: SpanContext | None = None,
) -> None:
    """Puts what the batcher reports for one request on that request's span, and links the
    span to its batch's span when given."""
    if not span.is_recording():
        return
    span.set_attributes(
        {
            "leadgw.batch.id": str(batch_id),
            "leadgw.batch.size": batch_size,
            "leadgw.batch.queue_wait_ms": queue_wait_s * 1000.0,
        }
    )
    if batch_context is not None and batch_context.is_valid:
        span.add_link(batch_context, {"leadgw.link": "batch"})


def record_late_span(
    tracer: Tracer,
    name: str,
    *,
    start_ns: int,
    end_ns: int,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> None:
    """A finished child of the current span, from ``start_ns`` to ``end_ns`` (``time.time_ns()``
    instants): a stage that turned out slow, recorded after the fact so that fast stages cost a
    clock read instead of a span."""
    span = tracer.start_span(name, start_time=start_ns, attributes=attributes)
    span.end(end_time=end_ns)


def record_queue_wait_span(
    tracer: Tracer, *, arrived: float, started: float, batch_id: int | str
) -> None:
    """A child of the current span covering one request's wait in the batcher queue, from its
    arrival to its batch's start (both ``time.monotonic()`` instants), recorded once the wait is
    over. Only for requests that really queued: one that ran at once has no wait to show."""
    to_epoch_ns = time.time_ns() - time.monotonic_ns()
    span = tracer.start_span(
        "queue wait",
        start_time=round(arrived * 1e9) + to_epoch_ns,
        attributes={"leadgw.batch.id": str(batch_id)},
    )
    span.end(end_time=round(started * 1e9) + to_epoch_ns)
