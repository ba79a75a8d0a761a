"""A call that brings no trace context is sampled, or not, before any span is made for it.

With a ratio sampler (``OTEL_TRACES_SAMPLER=traceidratio`` or ``parentbased_traceidratio``) a
root span's fate is decided by its trace id alone. The SDK draws that id inside ``start_span``
and builds a span object even for a call it then drops: at 1% sampling, 99 calls in 100 pay
for a span nobody records (~50 µs of a live worker's CPU a call all told,
docs/perf/2026-11-30-sampled-short-path.md). ``RootSampling`` draws the id first and asks the
sampler: a dropped call makes no span at all, as with tracing off; a sampled one gets its span
from the SDK with that very id (staged in ``DrawnTraceIds``), so which calls are sampled, and
their ids, are what the SDK alone would have given.
"""

from __future__ import annotations

import threading

from opentelemetry.context import Context
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio, Sampler, TraceIdRatioBased
from opentelemetry.trace import SpanKind, Tracer

__all__ = ["DrawnTraceIds", "RootSampling"]

# Samplers whose decision for a span without a parent depends on its trace id and nothing else
# (not its name, kind, attributes or links); ParentBasedTraceIdRatio's root is TraceIdRatioBased.
_BY_TRACE_ID = (TraceIdRatioBased, ParentBasedTraceIdRatio)
NO_PARENT = Context()


class DrawnTraceIds(RandomIdGenerator):
    """The SDK's random ids, except that a trace id drawn ahead and staged on a thread is the
    next one that thread's ``start_span`` takes."""

    def __init__(self) -> None:
        super().__init__()
        self._staged = threading.local()

    def draw_trace_id(self) -> int:
        """A random trace id, as ``generate_trace_id`` gives one, not staged."""
        return super().generate_trace_id()

    def stage(self, trace_id: int) -> None:
        self._staged.trace_id = trace_id

    def generate_trace_id(self) -> int:
        staged = self._staged.__dict__.pop("trace_id", None)
        return super().generate_trace_id() if staged is None else staged


class RootSampling:
    """Asks a ratio sampler about a root span before the span is made."""

    __slots__ = ("_ids", "_sampler")

    def __init__(self, sampler: Sampler, ids: DrawnTraceIds) -> None:
        self._sampler = sampler
        self._ids = ids

    @classmethod
    def of(cls, tracer: Tracer) -> RootSampling | None:
        """For an SDK tracer with a ratio sampler below 1 and ``DrawnTraceIds``; otherwise None
        (the decision may depend on more than the id, the id cannot be staged, or every call is
        sampled anyway)."""
        sampler = getattr(tracer, "sampler", None)
        ids = getattr(tracer, "id_generator", None)
        if not isinstance(sampler, _BY_TRACE_ID) or type(sampler) not in _BY_TRACE_ID:
            return None  # a subclass may decide otherwise
        if not isinstance(ids, DrawnTraceIds):
            return None
        # The id whose low half is largest is the last a ratio samples: if it is sampled, every
        # id is (a ratio of 1), and asking ahead would only add a draw to every call.
        last = TraceIdRatioBased.TRACE_ID_LIMIT
        if sampler.should_sample(NO_PARENT, last, "ratio of 1?").decision.is_sampled():
            return None
        return cls(sampler, ids)

    def sampled_trace_id(self, name: str, kind: SpanKind = SpanKind.SERVER) -> int | None:
        """A trace id drawn for a span ``name`` without a parent, if the sampler samples it;
        None if it drops it. Give the id to ``stage`` just before starting that span."""
        trace_id = self._ids.draw_trace_id()
        if not self._sampler.should_sample(NO_PARENT, trace_id, name, kind).decision.is_sampled():
            return None
        return trace_id

    def stage(self, trace_id: int) -> None:
        """The next span this thread starts, which must have ``context=NO_PARENT``, gets
        ``trace_id``."""
        self._ids.stage(trace_id)
