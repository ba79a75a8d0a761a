"""A call without trace context is decided by its trace id before any span is made: a dropped
call makes none, a sampled one gets a ``RootSpan`` made without ``Tracer.start_span`` and equal,
field by field, to the span the SDK would have made. Real grpc.aio server and client, the SDK's
tracer provider and processors."""

from __future__ import annotations

import grpc
import pytest
from opentelemetry import baggage, trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, Tracer, TracerProvider
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    ParentBasedTraceIdRatio,
    Sampler,
    SamplingResult,
    StaticSampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import SpanKind

from gateway.telemetry import Telemetry, server_interceptor
from gateway.telemetry.root_spans import RootSpan, RootSpans
from tests.gateway.telemetry.telemetry_helpers import SERVICE, start_echo_server

TRACEPARENT_SAMPLED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


async def _say(
    provider: TracerProvider, calls: int, metadata: tuple = (), request: bytes = b"x"
) -> None:
    server, port = await start_echo_server(server_interceptor(tracer_provider=provider))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            say = channel.unary_unary(f"/{SERVICE}/Say")
            for _ in range(calls):
                try:
                    assert await say(request, metadata=metadata) == b"echo:" + request
                except grpc.aio.AioRpcError:
                    assert request != b"x"
    finally:
        await server.stop(None)


def _provider(
    sampler: Sampler, limits: SpanLimits | None = None
) -> tuple[TracerProvider, InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler, span_limits=limits)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return provider, memory


class _SamplesAll(Sampler):
    """A user's sampler: ``RootSpans`` must leave it to the SDK (it could look at anything)."""

    def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None):  # type: ignore[no-untyped-def]
        return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)

    def get_description(self) -> str:
        return "SamplesAll"


@pytest.fixture
def start_span_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the spans made through the SDK's ``Tracer.start_span``."""
    started: list[str] = []
    real_start_span = Tracer.start_span

    def counting(self: Tracer, name: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        started.append(name)
        return real_start_span(self, name, *args, **kwargs)

    monkeypatch.setattr(Tracer, "start_span", counting)
    return started


@pytest.mark.parametrize("sampler", [TraceIdRatioBased(0.0), ParentBasedTraceIdRatio(0.0)])
async def test_a_call_without_trace_context_that_the_ratio_drops_starts_no_span(
    start_span_calls: list[str], sampler: Sampler
) -> None:
    """Dropped calls cost no span object at all; a call with a caller's sampled trace context
    is decided as the SDK decides it (a parent-based sampler follows its parent, a ratio looks
    at the trace id), without ``start_span`` either."""
    provider, memory = _provider(sampler)
    await _say(provider, 3)
    assert start_span_calls == []
    assert memory.get_finished_spans() == ()
    await _say(provider, 1, metadata=(("traceparent", TRACEPARENT_SAMPLED),))
    assert start_span_calls == []
    recorded = len(memory.get_finished_spans())
    assert recorded == (1 if isinstance(sampler, ParentBasedTraceIdRatio) else 0)
    provider.shutdown()


@pytest.mark.parametrize("sampler", [ParentBased(ALWAYS_ON), ALWAYS_ON, TraceIdRatioBased(1.0)])
async def test_a_sampled_root_span_is_made_without_start_span(
    start_span_calls: list[str], sampler: Sampler
) -> None:
    """The SDK's default sampler, always_on and a ratio of 1 sample every root span: each
    call's server span is a RootSpan, recorded and exported, and start_span is never called."""
    provider, memory = _provider(sampler)
    await _say(provider, 3)
    assert start_span_calls == []
    finished = memory.get_finished_spans()
    assert [span.name for span in finished] == [f"{SERVICE}/Say"] * 3
    assert all(isinstance(span, ReadableSpan) for span in finished)
    assert len({span.context.trace_id for span in finished}) == 3
    provider.shutdown()


async def test_a_ratio_keeps_its_share_and_each_sampled_span_the_id_it_was_decided_on() -> None:
    """At 50%, about half the calls are recorded (not a quarter, as two independent draws would
    give), and each recorded span's trace id is one the ratio samples."""
    sampler = ParentBasedTraceIdRatio(0.5)
    provider, memory = _provider(sampler)
    await _say(provider, 200)
    finished = memory.get_finished_spans()
    # Binomial(200, 0.5): sd ~7; a quarter would be ~50.
    assert 70 <= len(finished) <= 130
    bound = TraceIdRatioBased(0.5).bound
    for span in finished:
        assert span.context.trace_id & TraceIdRatioBased.TRACE_ID_LIMIT < bound
    assert len({span.context.trace_id for span in finished}) == len(finished)
    provider.shutdown()


def _fields(span: ReadableSpan) -> dict[str, object]:
    """What an exporter reads of a span, minus what differs from call to call."""
    return {
        "name": span.name,
        "kind": span.kind,
        "parent": span.parent,
        "attributes": {k: v for k, v in span.attributes.items() if k != "network.peer.port"},
        "dropped": (span.dropped_attributes, span.dropped_events, span.dropped_links),
        "events": [(e.name, dict(e.attributes or {})) for e in span.events],
        "links": list(span.links),
        "status": (span.status.status_code, span.status.description),
        "resource": span.resource,
        "scope": span.instrumentation_scope,
        "flags": span.context.trace_flags,
        "trace_state": span.context.trace_state,
        "remote": span.context.is_remote,
        "ended": span.start_time is not None and span.end_time >= span.start_time,
    }


@pytest.mark.parametrize("request_", [b"x", b"raise", b"unavailable", b"not-found"])
async def test_a_root_span_is_the_span_the_sdk_would_have_made(request_: bytes) -> None:
    """The same call through RootSpans (ALWAYS_ON) and through start_span (a user's sampler that
    also samples everything): every field an exporter reads is equal, the exception event and
    error status too, with a string limit applied the same way."""
    limits = SpanLimits(max_span_attribute_length=6)
    root_provider, root_memory = _provider(ALWAYS_ON, limits)
    sdk_provider, sdk_memory = _provider(_SamplesAll(), limits)
    assert RootSpans.of(root_provider.get_tracer("t")) is not None
    assert RootSpans.of(sdk_provider.get_tracer("t")) is None
    await _say(root_provider, 1, request=request_)
    await _say(sdk_provider, 1, request=request_)
    (root,) = root_memory.get_finished_spans()
    (sdk,) = sdk_memory.get_finished_spans()
    assert isinstance(sdk, ReadableSpan) and not isinstance(sdk, RootSpan)
    root_fields, sdk_fields = _fields(root), _fields(sdk)
    assert root_fields["attributes"]["network.peer.address"] == "127.0."  # cut to 6
    assert root_fields == sdk_fields
    root_provider.shutdown()
    sdk_provider.shutdown()


def test_a_root_span_has_every_field_of_the_sdks_span() -> None:
    """RootSpan sets the SDK span's fields itself: an SDK upgrade that adds one fails here."""
    provider, _ = _provider(ALWAYS_ON)
    tracer = provider.get_tracer("t")
    roots = RootSpans.of(tracer)
    assert roots is not None
    trace_id = roots.sampled_trace_id("r")
    assert trace_id is not None
    root = roots.start("r", trace_id, roots.clean({"a": 1}))
    sdk = tracer.start_span("s", context=Context(), attributes={"a": 1})
    assert isinstance(root, SdkSpan)
    assert set(vars(root)) == set(vars(sdk))
    assert root.is_recording() and root.start_time is not None
    assert trace.get_current_span() is not root
    root.end()
    sdk.end()
    provider.shutdown()


def test_only_the_sdks_samplers_that_decide_by_the_trace_id_make_root_spans() -> None:
    """Another sampler (a user's, or a subclass) may decide on the span's name, kind or
    attributes; samplers that drop every root span need no root spans, nor do those that record
    without sampling (start_span makes those); a proxy tracer is not the SDK's."""

    class Subclass(TraceIdRatioBased):
        pass

    def of(sampler: Sampler, limits: SpanLimits | None = None) -> RootSpans | None:
        provider = TracerProvider(sampler=sampler, span_limits=limits)
        return RootSpans.of(provider.get_tracer("t"))

    for sampler in [
        ALWAYS_ON, ParentBased(ALWAYS_ON), TraceIdRatioBased(0.1), ParentBasedTraceIdRatio(0.1),
        TraceIdRatioBased(1.0), ParentBasedTraceIdRatio(1.0), StaticSampler(Decision.RECORD_AND_SAMPLE),
    ]:  # fmt: skip
        assert of(sampler) is not None, sampler
    for sampler in [ALWAYS_OFF, ParentBased(ALWAYS_OFF), _SamplesAll(), Subclass(0.1),
                    ParentBased(_SamplesAll()), TraceIdRatioBased(0.0),
                    StaticSampler(Decision.RECORD_ONLY)]:  # fmt: skip
        roots = of(sampler)
        # A ratio of 0 is still a ratio: asked, it drops every call.
        assert roots is None or roots.sampled_trace_id("r") is None, sampler
    assert of(ALWAYS_ON, SpanLimits(max_span_attributes=3)) is None
    assert RootSpans.of(trace.ProxyTracer("t")) is None
    assert RootSpans.of(trace.NoOpTracerProvider().get_tracer("t")) is None


def test_a_ratio_below_1_is_asked_and_a_ratio_of_1_is_not() -> None:
    """A ratio of 1 samples every call: asking it would only add a call per span."""
    calls: list[int] = []

    class Counted(TraceIdRatioBased):
        def should_sample(self, parent_context, trace_id, *args, **kwargs):  # type: ignore[no-untyped-def]
            calls.append(trace_id)
            return super().should_sample(parent_context, trace_id, *args, **kwargs)

    provider = TracerProvider(sampler=ALWAYS_ON)
    for ratio, asked in [(None, 0), (Counted(0.999), 3)]:
        roots = RootSpans(provider.get_tracer("t"), ratio)
        for _ in range(3):
            trace_id = roots.sampled_trace_id("r")
            assert trace_id is not None or ratio is not None
        assert len(calls) == asked
    with_one = RootSpans.of(TracerProvider(sampler=TraceIdRatioBased(1.0)).get_tracer("t"))
    assert with_one is not None and with_one._ratio is None
    below = RootSpans.of(TracerProvider(sampler=TraceIdRatioBased(0.999)).get_tracer("t"))
    assert below is not None and below._ratio is not None


@pytest.mark.parametrize("environ", [{}, {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                                          "OTEL_TRACES_SAMPLER_ARG": "0.01"}])  # fmt: skip
def test_the_gateways_tracer_makes_root_spans(
    clean_otel_env: pytest.MonkeyPatch, environ: dict[str, str]
) -> None:
    """The provider the gateway configures, with the SDK's default sampler or a ratio from the
    environment, makes its server spans through RootSpans."""
    for key, value in environ.items():
        clean_otel_env.setenv(key, value)
    telemetry = Telemetry.configure(span_exporters=[InMemorySpanExporter()], set_global=False)
    try:
        assert RootSpans.of(telemetry.tracer_provider.get_tracer("t")) is not None
    finally:
        telemetry.shutdown()


def test_a_root_span_is_a_server_span_without_parent() -> None:
    provider, memory = _provider(ALWAYS_ON)
    roots = RootSpans.of(provider.get_tracer("t"))
    assert roots is not None
    trace_id = roots.sampled_trace_id("r")
    assert trace_id is not None
    span = roots.start("r", trace_id, roots.clean({"k": "v"}))
    assert span.get_span_context().trace_id == trace_id
    span.set_attribute("later", 2)
    span.end()
    span.set_attribute("after the end", 3)  # refused, as the SDK's span refuses it
    (finished,) = memory.get_finished_spans()
    assert finished.kind is SpanKind.SERVER and finished.parent is None
    assert dict(finished.attributes) == {"k": "v", "later": 2}
    provider.shutdown()


# ---- a caller's span context (W3C traceparent): its child decided and made directly ----

CALLER_TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN_ID = "b7ad6b7169203331"


class _UsersParentBased(ParentBased):
    """The SDK's ParentBased as a user's subclass: left to ``start_span``, so it shows what the
    SDK itself makes of a call."""


class _UsersParentBasedRatio(ParentBasedTraceIdRatio):
    """A user's subclass of an SDK sampler: it may decide by more than the trace id, so the
    gateway leaves its spans to ``start_span``."""


class _UsersRatio(TraceIdRatioBased):
    """A user's subclass of the SDK's ratio sampler, left to ``start_span`` like any user's."""


async def _seen(provider: TracerProvider, metadata: tuple) -> str:
    """What the handler of a call with ``metadata`` sees as its current trace context: the
    trace id, the span's flags and trace state, the baggage (the span id is new each call)."""

    async def current(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        span = trace.get_current_span().get_span_context()
        state = span.trace_state.to_header() if span.is_valid else ""
        return f"{span.trace_id:032x} {int(span.trace_flags):02x} {state!r} {baggage.get_all()}".encode()

    server = grpc.aio.server(interceptors=[server_interceptor(tracer_provider=provider)])
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(
            SERVICE, {"Current": grpc.unary_unary_rpc_method_handler(current)}
        )]
    )  # fmt: skip
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply = await channel.unary_unary(f"/{SERVICE}/Current")(b"", metadata=metadata)
    finally:
        await server.stop(None)
    return reply.decode()


def _traceparent(flags: str, trace_id: str = CALLER_TRACE_ID) -> str:
    return f"00-{trace_id}-{CALLER_SPAN_ID}-{flags}"


CALLER_CONTEXTS = [
    pytest.param((("traceparent", _traceparent("01")),), id="sampled"),
    pytest.param((("traceparent", _traceparent("00")),), id="not-sampled"),
    pytest.param((("traceparent", _traceparent("03")),), id="sampled-random-id"),
    pytest.param(
        (
            ("traceparent", _traceparent("01")),
            ("tracestate", "advisor=app1,firm=7"),
            ("baggage", "tenant=acme"),
        ),
        id="sampled-state-baggage",
    ),
    pytest.param(
        (
            ("traceparent", _traceparent("00")),
            ("tracestate", "advisor=app1"),
            ("baggage", "tenant=acme"),
        ),
        id="not-sampled-state-baggage",
    ),
]


@pytest.mark.parametrize("metadata", CALLER_CONTEXTS)
@pytest.mark.parametrize(
    ("sampler", "users"),
    [
        (ParentBased(ALWAYS_ON), _UsersParentBased(ALWAYS_ON)),
        (ParentBasedTraceIdRatio(0.01), _UsersParentBasedRatio(0.01)),
    ],
    ids=["parentbased_always_on", "parentbased_traceidratio"],
)
async def test_a_callers_child_is_the_span_the_sdk_would_have_made(
    start_span_calls: list[str], sampler: Sampler, users: Sampler, metadata: tuple
) -> None:
    """The same call with a caller's context through RootSpans and through start_span (the
    same sampler as a user's subclass): recorded or not alike, every field an exporter reads
    equal (parent, flags, trace state), and the handler sees the same trace context and
    baggage. start_span is called only for the user's sampler."""
    direct_provider, direct_memory = _provider(sampler)
    sdk_provider, sdk_memory = _provider(users)
    assert RootSpans.of(sdk_provider.get_tracer("t")) is None
    await _say(direct_provider, 1, metadata=metadata)
    assert start_span_calls == []
    await _say(sdk_provider, 1, metadata=metadata)
    assert start_span_calls == [f"{SERVICE}/Say"]
    direct, sdk = direct_memory.get_finished_spans(), sdk_memory.get_finished_spans()
    sampled = metadata[0][1].endswith(("01", "03"))
    assert len(direct) == len(sdk) == (1 if sampled else 0)
    if sampled:
        assert _fields(direct[0]) == _fields(sdk[0])
        assert format(direct[0].context.trace_id, "032x") == CALLER_TRACE_ID
        assert direct[0].parent is not None and direct[0].parent.is_remote
        assert format(direct[0].parent.span_id, "016x") == CALLER_SPAN_ID
    seen = await _seen(direct_provider, metadata)
    assert seen == await _seen(sdk_provider, metadata)
    assert seen.startswith(CALLER_TRACE_ID)
    assert ("'tenant': 'acme'" in seen) == any(key == "baggage" for key, _ in metadata)
    direct_provider.shutdown()
    sdk_provider.shutdown()


# Two caller trace ids: the low 64 bits of the first are under any ratio's bound, the second's
# over a ratio of 0.5: a ratio that is not parent-based samples by them, not by the flag.
LOW_TRACE_ID = "0af7651916cd43dd0000000000000001"
HIGH_TRACE_ID = "0af7651916cd43ddffffffffffffffff"


@pytest.mark.parametrize(
    ("trace_id", "flags", "recorded"),
    [(LOW_TRACE_ID, "00", 1), (HIGH_TRACE_ID, "01", 0), (LOW_TRACE_ID, "01", 1)],
)
async def test_a_ratio_that_is_not_parent_based_decides_a_callers_child_by_its_trace_id(
    start_span_calls: list[str], trace_id: str, flags: str, recorded: int
) -> None:
    metadata = (("traceparent", _traceparent(flags, trace_id)),)
    direct_provider, direct_memory = _provider(TraceIdRatioBased(0.5))
    sdk_provider, sdk_memory = _provider(_UsersRatio(0.5))
    await _say(direct_provider, 1, metadata=metadata)
    await _say(sdk_provider, 1, metadata=metadata)
    assert start_span_calls == [f"{SERVICE}/Say"]  # the user's ratio only
    assert len(direct_memory.get_finished_spans()) == recorded
    assert len(sdk_memory.get_finished_spans()) == recorded
    if recorded:
        direct, sdk = direct_memory.get_finished_spans()[0], sdk_memory.get_finished_spans()[0]
        assert _fields(direct) == _fields(sdk)
    direct_provider.shutdown()
    sdk_provider.shutdown()


@pytest.mark.parametrize(
    ("delegate", "exported"),
    [(_SamplesAll(), 3), (StaticSampler(Decision.RECORD_ONLY), 2)],  # recorded, not exported
    ids=["users", "record-only"],
)
async def test_a_delegate_for_remote_parents_that_is_not_by_trace_id_leaves_children_to_start_span(
    start_span_calls: list[str], delegate: Sampler, exported: int
) -> None:
    """A parent-based sampler whose remote-parent delegate is a user's may look at anything,
    and one that records without sampling makes a span the direct way cannot: the SDK asks
    it; root spans are still made directly."""
    sampler = ParentBased(ALWAYS_ON, remote_parent_not_sampled=delegate)
    provider, memory = _provider(sampler)
    await _say(provider, 2)
    assert start_span_calls == []
    await _say(provider, 1, metadata=(("traceparent", _traceparent("00")),))
    assert start_span_calls == [f"{SERVICE}/Say"]
    assert len(memory.get_finished_spans()) == exported
    provider.shutdown()


@pytest.mark.parametrize(
    "metadata",
    [(("traceparent", "00-not-a-trace-context-01"),), (("baggage", "tenant=acme"),)],
    ids=["malformed", "baggage-alone"],
)
async def test_a_call_whose_caller_context_has_no_valid_span_is_a_root_as_the_sdk_makes_it(
    start_span_calls: list[str], metadata: tuple
) -> None:
    provider, memory = _provider(ParentBased(ALWAYS_ON))
    await _say(provider, 1, metadata=metadata)
    assert start_span_calls == [f"{SERVICE}/Say"]
    (span,) = memory.get_finished_spans()
    assert span.parent is None and format(span.context.trace_id, "032x") != CALLER_TRACE_ID
    provider.shutdown()


async def test_a_dropped_child_is_counted_as_the_sdk_counts_it(
    clean_otel_env: pytest.MonkeyPatch,
) -> None:
    """The SDK's own span metrics (otel.sdk.span.started, by parent origin and sampling
    result) see the direct children as they see start_span's."""
    clean_otel_env.setenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "true")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    def metered(sampler: Sampler) -> tuple[TracerProvider, InMemoryMetricReader]:
        reader = InMemoryMetricReader()
        provider = TracerProvider(sampler=sampler, meter_provider=MeterProvider([reader]))
        return provider, reader

    counts = []
    for sampler in [ParentBased(ALWAYS_ON), _UsersParentBased(ALWAYS_ON)]:
        provider, reader = metered(sampler)
        for flags in ["01", "00", "00"]:
            await _say(provider, 1, metadata=(("traceparent", _traceparent(flags)),))
        data = reader.get_metrics_data()
        points = {
            tuple(sorted(point.attributes.items())): point.value
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == "otel.sdk.span.started"
            for point in metric.data.data_points
        }
        counts.append(points)
        provider.shutdown()
    assert counts[0] == counts[1]
    assert sorted(counts[0].values()) == [1, 2]
