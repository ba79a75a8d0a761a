"""A grpc.aio server interceptor: one SERVER span and one latency sample per RPC.

Spans follow the OpenTelemetry gRPC conventions (name ``package.Service/Method``, ``rpc.*``
attributes), continue the caller's W3C trace context from the request metadata, and are current
while the handler runs, so spans the servicer and batcher start in the same task nest under them.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Collection, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeAlias

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, TracerProvider

from gateway.telemetry.metrics import Metrics
from gateway.telemetry.root_spans import NO_PARENT, RootSpans

TRACER_NAME = "leadgw.gateway"

UNTRACED_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)
"""Probed constantly by orchestrators and tools; a span per probe would drown real traffic."""

# Server-side codes that mean the server failed (the gRPC semantic conventions' list); the
# others (INVALID_ARGUMENT, NOT_FOUND, ...) are the caller's doing and leave the status unset.
_SERVER_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)

# grpc.RpcMethodHandler as an alias of Any: grpc's type hints declare none of its fields.
Handler: TypeAlias = Any
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]]


def server_interceptor(
    *,
    tracer_provider: TracerProvider | None = None,
    metrics: Metrics | None = None,
    untraced_services: Collection[str] = UNTRACED_SERVICES,
) -> grpc.aio.ServerInterceptor:
    """The tracing and RPC-metrics interceptor.

    ``tracer_provider``: None uses the global one (as the rest of leadgw does). ``metrics``: where
    to count RPCs and their latency; None records no metrics. Calls to ``untraced_services`` pass
    through untouched. Only ``async`` handlers are wrapped; grpc.aio servicers are async.
    """
    tracer = trace.get_tracer(TRACER_NAME, tracer_provider=tracer_provider)
    return _TelemetryInterceptor(tracer, metrics, frozenset(untraced_services))


def server_handler_wrapper(
    *,
    tracer_provider: TracerProvider | None = None,
    metrics: Metrics | None = None,
    untraced_services: Collection[str] = UNTRACED_SERVICES,
) -> Callable[[str, Handler], Handler]:
    """The same tracing and RPC metrics as ``server_interceptor``, as a function that wraps one
    method's handler (``wrap(path, handler)``), for servers that wrap handlers at registration
    instead of paying for an interceptor on every RPC."""
    tracer = trace.get_tracer(TRACER_NAME, tracer_provider=tracer_provider)
    return _TelemetryInterceptor(tracer, metrics, frozenset(untraced_services)).wrap


# Peers whose span attributes a method keeps ready; a peer is a connection, so a gateway sees
# few at a time. Past this the cache starts again, which only costs a parse.
_MAX_PEERS = 1024


@dataclass(frozen=True, slots=True)
class _Method:
    """What the interceptor knows of one method, parsed once."""

    name: str  # package.Service/Method
    service: str
    method: str
    attributes: dict[str, str]
    # How the span's attributes are kept: cleaned once here when a RootSpans will take them.
    clean: Callable[[dict[str, str | int]], dict[str, Any]] = dict
    by_peer: dict[str, dict[str, Any]] = field(default_factory=dict)

    def span_attributes(self, peer: str) -> dict[str, Any]:
        """The server span's attributes for a call from ``peer``: the method's and the peer's,
        built once per peer. Given to ``start_span`` whole, so that a sampler sees them all and
        the SDK cleans one mapping instead of a second one under the span's lock after the
        start (1-2 µs of the ~45 a sampled server span costs: docs/perf/2026-11-28-trace100.md)."""
        attributes = self.by_peer.get(peer)
        if attributes is None:
            if len(self.by_peer) >= _MAX_PEERS:
                self.by_peer.clear()
            attributes = self.clean({**self.attributes, **_peer_attributes(peer)})
            self.by_peer[peer] = attributes
        return attributes


class _TelemetryInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, tracer: Tracer, metrics: Metrics | None, untraced: frozenset[str]) -> None:
        self._tracer = tracer
        # A span nobody records only carries its caller's trace context to the logs: a call that
        # brings none and is not sampled runs with no span current (~75-80 µs less server CPU
        # a batch-1 call, all told: docs/perf/2026-11-30-interleaved-ab.md). Trace context comes
        # in the keys the propagator reads (W3C traceparent, tracestate, baggage by default).
        self._trace_keys = frozenset(propagate.get_global_textmap().fields)
        # A tracer that samples nothing (no exporter configured) need not even be asked.
        self._never_samples = getattr(tracer, "sampler", None) is ALWAYS_OFF
        # A call without trace context is decided by its trace id before any span is made, and
        # a sampled one's span made directly, when the sampler is one of the SDK's that allow it.
        self._roots = RootSpans.of(tracer)
        # No-op instruments (no reader) are not called at all: one call less per RPC.
        self._metrics = metrics if metrics is not None and metrics.recording else None
        self._untraced = untraced
        # method path → (inner handler, wrapped handler). Inner interceptors usually return the
        # same handler object every call, so wrapping happens once per method.
        self._cache: dict[str, tuple[Handler, Handler]] = {}

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:  # unknown method: gRPC answers UNIMPLEMENTED itself
            return None
        path = handler_call_details.method
        cached = self._cache.get(path)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self.wrap(path, handler)
        self._cache[path] = (handler, wrapped)
        return wrapped

    def wrap(self, path: str, handler: Handler) -> Handler:
        """The handler of ``path`` with a span and a latency sample around every call."""
        service, _, method = path.lstrip("/").partition("/")
        if service in self._untraced:
            return handler
        info = _Method(
            name=f"{service}/{method}",
            service=service,
            method=method,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": method},
            clean=dict if self._roots is None else self._roots.clean,
        )
        tracer, metrics = self._tracer, self._metrics
        trace_keys, never_samples, roots = self._trace_keys, self._never_samples, self._roots
        return _traced_handler(
            handler,
            lambda context: _RpcScope(
                tracer, metrics, info, context, trace_keys, never_samples, roots
            ),
        )


def _traced_handler(handler: Handler, scope: Callable[[Any], _RpcScope]) -> Handler:
    """The same handler with its behaviour run inside an ``_RpcScope``."""
    kinds: Sequence[tuple[Any, Callable[..., Handler]]] = (
        (handler.unary_unary, grpc.unary_unary_rpc_method_handler),
        (handler.unary_stream, grpc.unary_stream_rpc_method_handler),
        (handler.stream_unary, grpc.stream_unary_rpc_method_handler),
        (handler.stream_stream, grpc.stream_stream_rpc_method_handler),
    )
    for behavior, make in kinds:
        if behavior is None:
            continue
        if inspect.isasyncgenfunction(behavior):
            traced: Callable[..., Any] = _traced_stream(behavior, scope)
        elif inspect.iscoroutinefunction(behavior):
            traced = _traced_call(behavior, scope)
        else:
            return handler  # a synchronous handler runs on a thread pool; left as it is
        return make(
            traced,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return handler


def _traced_call(
    behavior: Callable[[Any, Any], Awaitable[Any]], scope: Callable[[Any], _RpcScope]
) -> Callable[[Any, Any], Awaitable[Any]]:
    # Covers unary responses and streaming handlers written with ``await context.write()``.
    async def traced(request: Any, context: grpc.aio.ServicerContext) -> Any:
        with scope(context):
            return await behavior(request, context)

    return traced


def _traced_stream(
    behavior: Callable[[Any, Any], AsyncGenerator[Any, None]], scope: Callable[[Any], _RpcScope]
) -> Callable[[Any, Any], AsyncGenerator[Any, None]]:
    async def traced(request: Any, context: grpc.aio.ServicerContext) -> AsyncGenerator[Any, None]:
        with scope(context):
            # aclosing: if the client goes away, the handler's own cleanup runs inside the span.
            async with aclosing(behavior(request, context)) as responses:
                async for response in responses:
                    yield response

    return traced


class _MetadataGetter(Getter[Sequence[tuple[str, str | bytes]]]):
    """Reads W3C trace context keys (lowercase, ASCII) from gRPC invocation metadata."""

    def get(self, carrier: Sequence[tuple[str, str | bytes]], key: str) -> list[str] | None:
        values = [v for k, v in carrier if k == key and isinstance(v, str)]
        return values or None

    def keys(self, carrier: Sequence[tuple[str, str | bytes]]) -> list[str]:
        return [k for k, _ in carrier]


_GETTER = _MetadataGetter()


class _RpcScope:
    """Starts the span and makes it current on enter; on exit works out the status code the
    client will see, records it, ends the span and counts the RPC.

    A call whose metadata has none of ``trace_keys`` (no trace context) and whose span is not
    sampled runs with no span current, as outside any request; with ``never_samples``, or when
    ``roots`` drops it, no span is started for it at all, and when ``roots`` samples it, its
    span is ``roots``' own. A call that brings its caller's span context gets its span from
    ``roots`` too when ``roots`` can decide it (``RootSpans.remote_parent``), recording or not,
    current with the rest of the caller's context (baggage)."""

    __slots__ = (
        "_context", "_info", "_metrics", "_never_samples", "_roots", "_span", "_start", "_token",
        "_trace_keys", "_tracer",
    )  # fmt: skip
    _span: Span | None

    def __init__(
        self,
        tracer: Tracer,
        metrics: Metrics | None,
        info: _Method,
        context: grpc.aio.ServicerContext,
        trace_keys: frozenset[str] = frozenset(),
        never_samples: bool = False,
        roots: RootSpans | None = None,
    ) -> None:
        self._tracer = tracer
        self._metrics = metrics
        self._info = info
        self._context = context
        self._trace_keys = trace_keys
        self._never_samples = never_samples
        self._roots = roots

    def __enter__(self) -> Span:
        self._start = time.perf_counter()
        context = self._context
        metadata = context.invocation_metadata() or ()
        trace_keys = self._trace_keys
        untraced = not any(key in trace_keys for key, _ in metadata)
        roots = self._roots
        if not untraced:
            parent = propagate.extract(metadata, getter=_GETTER)
            caller = roots.remote_parent(parent) if roots is not None else None
            if caller is not None:
                assert roots is not None
                info = self._info
                child = roots.child(
                    info.name, caller, parent, lambda: info.span_attributes(context.peer())
                )
                self._span = child
                self._token = otel_context.attach(trace.set_span_in_context(child, parent))
                return child
        elif self._never_samples:
            self._span = None
            return trace.INVALID_SPAN
        elif roots is not None:
            trace_id = roots.sampled_trace_id(self._info.name)
            if trace_id is None:  # dropped: no span at all, as with tracing off
                self._span = None
                return trace.INVALID_SPAN
            attributes = self._info.span_attributes(context.peer())
            root = self._span = roots.start(self._info.name, trace_id, attributes)
            self._token = otel_context.attach(trace.set_span_in_context(root, NO_PARENT))
            return root
        else:
            parent = NO_PARENT  # no trace context: nothing to extract
        attributes = self._info.span_attributes(context.peer())
        span = self._tracer.start_span(
            self._info.name, context=parent, kind=SpanKind.SERVER, attributes=attributes
        )
        if untraced and not span.is_recording():
            self._span = None  # not recorded, and no caller's context to carry: nothing to end
            return span
        self._span = span
        self._token = otel_context.attach(trace.set_span_in_context(span, parent))
        return span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        code = self._status_code(exc)
        # Before the span ends, so that a finished span means a recorded RPC. (context.abort
        # sends the status before it raises: the client may see it before this runs.)
        if self._metrics is not None:
            self._metrics.record_rpc(
                self._info.service,
                self._info.method,
                code.value[0],
                time.perf_counter() - self._start,
            )
        span = self._span
        if span is None:  # no trace context came with the call and its span is not recorded
            return
        try:
            if span.is_recording():
                span.set_attribute("rpc.grpc.status_code", code.value[0])
                if code in _SERVER_ERRORS:
                    span.set_status(Status(StatusCode.ERROR, _details(self._context) or code.name))
                if exc is not None and not isinstance(exc, _EXPECTED):
                    span.record_exception(exc)
            span.end()
        finally:
            otel_context.detach(self._token)

    def _status_code(self, exc: BaseException | None) -> grpc.StatusCode:
        code = self._context.code()
        if isinstance(code, grpc.StatusCode):
            return code  # set by context.abort() or context.set_code()
        if exc is None:
            return grpc.StatusCode.OK
        if isinstance(exc, asyncio.CancelledError | GeneratorExit):
            remaining = self._context.time_remaining()
            expired = remaining is not None and remaining <= 0
            return grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
        return grpc.StatusCode.UNKNOWN  # what grpc.aio sends for an unhandled exception


# Exceptions that are how an RPC ends, not failures to record on the span.
_EXPECTED = (grpc.aio.AbortError, asyncio.CancelledError, GeneratorExit)


def _details(context: grpc.aio.ServicerContext) -> str:
    details = context.details()
    return details.decode(errors="replace") if isinstance(details, bytes) else details or ""


def _peer_attributes(peer: str) -> dict[str, str | int]:
    """``ipv4:127.0.0.1:5000`` / ``ipv6:[::1]:5000`` → network.peer.address and .port."""
    kind, _, address = peer.partition(":")
    if kind not in ("ipv4", "ipv6"):
        return {"network.transport": kind} if kind == "unix" else {}
    host, _, port = address.rpartition(":")
    attributes: dict[str, str | int] = {"network.peer.address": host.strip("[]")}
    if port.isdigit():
        attributes["network.peer.port"] = int(port)
    return attributes
