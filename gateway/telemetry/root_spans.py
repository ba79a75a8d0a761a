"""The server span of a call that brings no trace context: sampled or dropped before any span is
made, and a sampled one made directly instead of through the SDK's ``Tracer.start_span``.

For such a call (a root span) the SDK's own samplers decide by the trace id alone: a ratio
(``traceidratio``, ``parentbased_traceidratio``) by its low 64 bits, ``always_on`` and
``parentbased_always_on`` (the SDK's default) by nothing at all. ``RootSpans`` draws the id and
decides first, so a dropped call makes no span (at 1%, 99 calls in 100 no longer pay for a span
nobody records: docs/perf/2026-11-30-sampled-short-path.md). A sampled call then needs none of
``start_span``'s generic work (the parent lookup, the sampler again, its attributes copied and
cleaned once more, the keyword-heavy constructors): ``RootSpan`` is the SDK's span with its
fields set directly, its attributes cleaned once per method and peer, not once per call
(71 → 39 µs a server span's life in a loop, ~60–67 µs of a live worker's CPU a sampled call:
docs/perf/2026-11-30-root-spans.md). Everything after the start (attributes, links, events,
status, ``end``, the span processors, the exporters) is the SDK's own code on its own class.

Other samplers (a user's, which may decide on a span's name or attributes) and calls with a
caller's trace context go through ``start_span`` as before.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace import sampling
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    StaticSampler,
    TraceIdRatioBased,
)
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags, Tracer

__all__ = ["NO_PARENT", "RootSpan", "RootSpans"]

NO_PARENT = Context()
_UNSET = Status(StatusCode.UNSET)
# A server span starts with at most 5 attributes (rpc.*, network.*); a limit below this is left
# to the SDK, which drops the oldest (the default limit is 128).
_FEWEST_ATTRIBUTES = 16


def _root_sampler(sampler: object) -> StaticSampler | TraceIdRatioBased | None:
    """The sampler that decides a root span, if it is one of the SDK's own that decide by the
    trace id alone; None for any other (a subclass or a user's sampler may look at more)."""
    if isinstance(sampler, ParentBased) and type(sampler).__module__ == sampling.__name__:
        sampler = sampler._root  # a ParentBased sends a span without a parent to its root
    if type(sampler).__module__ != sampling.__name__:
        return None
    if isinstance(sampler, StaticSampler | TraceIdRatioBased):
        return sampler
    return None


class RootSpan(SdkSpan):
    """The SDK's span, made as ``Tracer.start_span`` makes a sampled root span, without its
    generic work. ``attributes`` must already be clean (``RootSpans.clean``)."""

    def __init__(
        self,
        tracer: SdkTracer,
        name: str,
        context: SpanContext,
        kind: SpanKind,
        attributes: Mapping[str, Any],
        record_end_metrics: Any,
    ) -> None:
        limits = tracer._span_limits
        # ReadableSpan's fields
        self._name = name
        self._context = context
        self._kind = kind
        self._instrumentation_info = tracer.instrumentation_info
        self._instrumentation_scope = tracer._instrumentation_scope
        self._parent = None
        self._start_time = None
        self._end_time = None
        self._resource = tracer.resource
        self._status = _UNSET
        # Span's fields
        self._sampler = tracer.sampler
        self._trace_config = None
        self._record_exception = True
        self._set_status_on_exception = True
        self._span_processor = tracer.span_processor
        self._limits = limits
        self._lock = threading.Lock()
        self._attributes = BoundedAttributes(
            limits.max_span_attributes,
            immutable=False,
            max_value_len=limits.max_span_attribute_length,
        )
        self._attributes._dict.update(attributes)
        self._events = BoundedList(limits.max_events)
        self._links = BoundedList(limits.max_links)
        self._record_end_metrics = record_end_metrics


class RootSpans:
    """Decides a root span by its trace id and, when sampled, makes it."""

    __slots__ = ("_flags", "_ratio", "_tracer")

    def __init__(self, tracer: SdkTracer, ratio: TraceIdRatioBased | None) -> None:
        self._tracer = tracer
        self._ratio = ratio  # None: every root span is sampled
        random = tracer.id_generator.is_trace_id_random()
        self._flags = TraceFlags(
            TraceFlags.SAMPLED | (TraceFlags.RANDOM_TRACE_ID if random else TraceFlags.DEFAULT)
        )

    @classmethod
    def of(cls, tracer: Tracer) -> RootSpans | None:
        """For the SDK's tracer with one of the SDK's samplers that decide a root span by its
        trace id alone and sample some; otherwise None (the span goes through ``start_span``)."""
        if type(tracer) is not SdkTracer:
            return None
        limit = tracer._span_limits.max_span_attributes
        if limit is not None and limit < _FEWEST_ATTRIBUTES:
            return None  # the SDK drops the oldest of too many attributes at the start: let it
        root = _root_sampler(tracer.sampler)
        if root is None:
            return None
        if isinstance(root, StaticSampler):
            sampled = root.should_sample(NO_PARENT, 0, "always?").decision.is_sampled()
            return cls(tracer, None) if sampled else None
        # The id whose low half is largest is the last a ratio samples: if it is sampled, every
        # id is (a ratio of 1), and asking would only add a call to every span.
        last = TraceIdRatioBased.TRACE_ID_LIMIT
        every = root.should_sample(NO_PARENT, last, "ratio of 1?").decision.is_sampled()
        return cls(tracer, None if every else root)

    def clean(self, attributes: Mapping[str, Any]) -> dict[str, Any]:
        """``attributes`` as the SDK keeps them on a span (invalid values left out, strings cut
        to the span attribute length limit): done once for attributes given to many spans."""
        limits = self._tracer._span_limits
        cleaned = BoundedAttributes(
            None, attributes, immutable=True, max_value_len=limits.max_span_attribute_length
        )
        return dict(cleaned)

    def sampled_trace_id(self, name: str, kind: SpanKind = SpanKind.SERVER) -> int | None:
        """A trace id for a root span ``name`` if the sampler samples it; None if it drops it (or
        the tracer is disabled): then no span is made at all."""
        tracer = self._tracer
        if not tracer._is_enabled():
            return None
        trace_id = tracer.id_generator.generate_trace_id()
        ratio = self._ratio
        if (
            ratio is not None
            and not ratio.should_sample(NO_PARENT, trace_id, name, kind).decision.is_sampled()
        ):
            return None
        return trace_id

    def start(
        self,
        name: str,
        trace_id: int,
        attributes: Mapping[str, Any],
        kind: SpanKind = SpanKind.SERVER,
    ) -> RootSpan:
        """The started, recording span ``name`` without a parent, of the trace ``trace_id`` (from
        ``sampled_trace_id``). ``attributes`` must come from ``clean``."""
        tracer = self._tracer
        context = SpanContext(
            trace_id,
            tracer.id_generator.generate_span_id(),
            is_remote=False,
            trace_flags=self._flags,
        )
        end_metrics = tracer._tracer_metrics.start_span(None, Decision.RECORD_AND_SAMPLE)
        span = RootSpan(tracer, name, context, kind, attributes, end_metrics)
        span.start(parent_context=NO_PARENT)
        return span
