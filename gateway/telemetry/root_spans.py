"""The server span of a call, sampled or dropped before any span is made, and a sampled one
made directly instead of through the SDK's ``Tracer.start_span``: for a call that brings no trace
context (a root span) and for one whose caller sent its own span's context (a child of that
remote span).

For a root span the SDK's own samplers decide by the trace id alone: a ratio (``traceidratio``,
``parentbased_traceidratio``) by its low 64 bits, ``always_on`` and ``parentbased_always_on``
(the SDK's default) by nothing at all. ``RootSpans`` draws the id and decides first, so a
dropped call makes no span (at 1%, 99 calls in 100 no longer pay for a span nobody records:
docs/perf/2026-11-30-sampled-short-path.md). A sampled call then needs none of ``start_span``'s
generic work (the parent lookup, the sampler again, its attributes copied and cleaned once more,
the keyword-heavy constructors): ``RootSpan`` is the SDK's span with its fields set directly,
its attributes cleaned once per method and peer, not once per call (71 → 39 µs a server span's
life in a loop, ~60–67 µs of a live worker's CPU a sampled call:
docs/perf/2026-11-30-root-spans.md). Everything after the start (attributes, links, events,
status, ``end``, the span processors, the exporters) is the SDK's own code on its own class.

A caller's span context (W3C ``traceparent``) is decided the same way, as the SDK's samplers
decide a remote parent's child: a parent-based sampler by the parent's sampled flag (its
``remote_parent_sampled`` and ``remote_parent_not_sampled`` delegates, when they are the SDK's
samplers that decide by the trace id), any other of those samplers by the caller's trace id. The
child keeps the caller's trace id and trace state; a dropped child is a non-recording span that
carries them to the logs and onward calls, as ``start_span`` makes it
(docs/perf/2026-11-30-remote-parents.md).

Other samplers (a user's, which may decide on a span's name or attributes) go through
``start_span`` as before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
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
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    Tracer,
    get_current_span,
)

__all__ = ["NO_PARENT", "RootSpan", "RootSpans"]

NO_PARENT = Context()
_UNSET = Status(StatusCode.UNSET)
# A server span starts with at most 5 attributes (rpc.*, network.*); a limit below this is left
# to the SDK, which drops the oldest (the default limit is 128).
_FEWEST_ATTRIBUTES = 16


_BY_TRACE_ID = StaticSampler | TraceIdRatioBased
# How a child of a remote parent is decided: always, never, or by a ratio of its trace id.
_ChildDecision = bool | TraceIdRatioBased


def _by_trace_id(sampler: object) -> StaticSampler | TraceIdRatioBased | None:
    """``sampler`` if it is one of the SDK's own that decide by the trace id alone (or by
    nothing); None for any other (a subclass or a user's sampler may look at more)."""
    if type(sampler).__module__ == sampling.__name__ and isinstance(sampler, _BY_TRACE_ID):
        return sampler
    return None


def _is_sdks_parent_based(sampler: object) -> bool:
    return isinstance(sampler, ParentBased) and type(sampler).__module__ == sampling.__name__


def _root_sampler(sampler: object) -> StaticSampler | TraceIdRatioBased | None:
    """The sampler that decides a root span, if it is one of the SDK's own that decide by the
    trace id alone; None for any other."""
    if _is_sdks_parent_based(sampler):
        sampler = sampler._root  # type: ignore[attr-defined]  # a span without a parent
    return _by_trace_id(sampler)


def _child_decision(sampler: StaticSampler | TraceIdRatioBased) -> _ChildDecision | None:
    if isinstance(sampler, StaticSampler):
        decision = sampler.should_sample(NO_PARENT, 0, "always?").decision
        if decision.is_recording() != decision.is_sampled():
            return None  # RECORD_ONLY: a recorded span that is not sampled; start_span makes it
        return decision.is_sampled()
    return sampler


def _remote_child_decisions(sampler: object) -> tuple[_ChildDecision, _ChildDecision] | None:
    """How a child of a remote parent is decided when the parent is sampled and when it is not,
    as ``sampler`` decides it; None when that is not one of the SDK's samplers that decide by
    the trace id (``start_span`` then asks the sampler itself)."""
    if _is_sdks_parent_based(sampler):
        # A caller's span context is always remote: the local delegates are never asked here.
        sampled = _by_trace_id(sampler._remote_parent_sampled)  # type: ignore[attr-defined]
        not_sampled = _by_trace_id(sampler._remote_parent_not_sampled)  # type: ignore[attr-defined]
    else:
        sampled = not_sampled = _by_trace_id(sampler)
    if sampled is None or not_sampled is None:
        return None
    for_sampled, for_not_sampled = _child_decision(sampled), _child_decision(not_sampled)
    if for_sampled is None or for_not_sampled is None:
        return None
    return for_sampled, for_not_sampled


def _decides(decision: _ChildDecision, trace_id: int) -> bool:
    if isinstance(decision, bool):
        return decision
    return trace_id & TraceIdRatioBased.TRACE_ID_LIMIT < decision.bound


class RootSpan(SdkSpan):
    """The SDK's span, made as ``Tracer.start_span`` makes a sampled root span (or, with
    ``parent``, a sampled child of a caller's remote span), without its generic work.
    ``attributes`` must already be clean (``RootSpans.clean``)."""

    def __init__(
        self,
        tracer: SdkTracer,
        name: str,
        context: SpanContext,
        kind: SpanKind,
        attributes: Mapping[str, Any],
        record_end_metrics: Any,
        parent: SpanContext | None = None,
    ) -> None:
        limits = tracer._span_limits
        # ReadableSpan's fields
        self._name = name
        self._context = context
        self._kind = kind
        self._instrumentation_info = tracer.instrumentation_info
        self._instrumentation_scope = tracer._instrumentation_scope
        self._parent = parent
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
    """Decides a root span by its trace id and, when sampled, makes it; decides and makes a
    child of a caller's remote span the same way when the sampler allows it."""

    __slots__ = ("_flags", "_ratio", "_remote", "_tracer")

    def __init__(
        self,
        tracer: SdkTracer,
        ratio: TraceIdRatioBased | None,
        remote: tuple[_ChildDecision, _ChildDecision] | None = None,
    ) -> None:
        self._tracer = tracer
        self._ratio = ratio  # None: every root span is sampled
        # (a sampled caller's child, an unsampled caller's child); None: start_span decides
        self._remote = remote
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
        remote = _remote_child_decisions(tracer.sampler)
        if isinstance(root, StaticSampler):
            # Never (or record-only) sampled roots go through start_span, which drops (or
            # records) them as the sampler says.
            return cls(tracer, None, remote) if _child_decision(root) else None
        # The id whose low half is largest is the last a ratio samples: if it is sampled, every
        # id is (a ratio of 1), and asking would only add a call to every span.
        last = TraceIdRatioBased.TRACE_ID_LIMIT
        every = root.should_sample(NO_PARENT, last, "ratio of 1?").decision.is_sampled()
        return cls(tracer, None if every else root, remote)

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

    def remote_parent(self, context: Context) -> SpanContext | None:
        """The caller's span context in ``context`` (extracted from a call's metadata) if it is
        valid and this decides its child; None when ``start_span`` must (no valid parent: a
        malformed header, or baggage alone; a sampler this cannot decide for; tracing
        disabled)."""
        if self._remote is None or not self._tracer._is_enabled():
            return None
        parent = get_current_span(context).get_span_context()
        if not parent.is_valid:
            return None
        return parent

    def child(
        self,
        name: str,
        parent: SpanContext,
        parent_context: Context,
        attributes: Callable[[], Mapping[str, Any]],
        kind: SpanKind = SpanKind.SERVER,
    ) -> RootSpan | NonRecordingSpan:
        """The started span ``name``, child of the caller's ``parent`` (from ``remote_parent``;
        ``parent_context`` is what it came in), as ``start_span`` makes it: a recording
        ``RootSpan`` if sampled, with ``attributes()`` (clean, as for ``start``), else a
        non-recording span that carries the caller's trace id and state."""
        assert self._remote is not None
        tracer = self._tracer
        trace_id = parent.trace_id
        flags = parent.trace_flags
        sampled = _decides(self._remote[0 if flags.sampled else 1], trace_id)
        own_flags = TraceFlags(
            (TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
            | (TraceFlags.RANDOM_TRACE_ID if flags.random_trace_id else TraceFlags.DEFAULT)
        )
        context = SpanContext(
            trace_id,
            tracer.id_generator.generate_span_id(),
            is_remote=False,
            trace_flags=own_flags,
            trace_state=parent.trace_state,
        )
        decision = Decision.RECORD_AND_SAMPLE if sampled else Decision.DROP
        end_metrics = tracer._tracer_metrics.start_span(parent, decision)
        if not sampled:
            return NonRecordingSpan(context)
        span = RootSpan(tracer, name, context, kind, attributes(), end_metrics, parent)
        span.start(parent_context=parent_context)
        return span
