"""The server interceptor on a real grpc.aio server: SERVER spans, status codes, propagation."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Sampler
from opentelemetry.trace import SpanKind, StatusCode

from gateway.telemetry import server_interceptor
from gateway.telemetry.interceptor import _MAX_PEERS, _Method
from tests.gateway.telemetry.telemetry_helpers import (
    SERVICE,
    EchoServer,
    MetricRecorder,
    SpanRecorder,
    start_echo_server,
)

CALLER_TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{CALLER_TRACE_ID}-{CALLER_SPAN_ID}-01"


async def test_unary_call_gets_a_server_span(echo_server: EchoServer, spans: SpanRecorder) -> None:
    assert await echo_server.say(b"hi") == b"echo:hi"

    span = spans.named(f"{SERVICE}/Say")
    assert span.kind is SpanKind.SERVER
    assert span.attributes is not None
    assert dict(span.attributes) | {"network.peer.port": 0} == {
        "rpc.system": "grpc",
        "rpc.service": SERVICE,
        "rpc.method": "Say",
        "rpc.grpc.status_code": grpc.StatusCode.OK.value[0],
        "network.peer.address": "127.0.0.1",
        "network.peer.port": 0,
    }
    assert span.status.status_code is StatusCode.UNSET
    assert span.parent is None


@pytest.mark.parametrize(
    ("request_", "code", "span_status"),
    [
        # A caller's mistake is not a server error: the span status stays unset.
        (b"not-found", grpc.StatusCode.NOT_FOUND, StatusCode.UNSET),
        (b"unavailable", grpc.StatusCode.UNAVAILABLE, StatusCode.ERROR),
    ],
)
async def test_aborted_call_records_its_status_code(
    echo_server: EchoServer,
    spans: SpanRecorder,
    request_: bytes,
    code: grpc.StatusCode,
    span_status: StatusCode,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await echo_server.say(request_)
    assert raised.value.code() is code

    (span,) = await spans.wait_for(f"{SERVICE}/Say")
    assert span.attributes is not None
    assert span.attributes["rpc.grpc.status_code"] == code.value[0]
    assert span.status.status_code is span_status
    if span_status is StatusCode.ERROR:
        assert span.status.description == raised.value.details()
    assert not span.events  # an abort is how an RPC ends, not an exception to record


async def test_unexpected_exception_is_unknown_and_recorded(
    echo_server: EchoServer, spans: SpanRecorder
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await echo_server.say(b"raise")
    assert raised.value.code() is grpc.StatusCode.UNKNOWN

    span = spans.named(f"{SERVICE}/Say")
    assert span.attributes is not None
    assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.UNKNOWN.value[0]
    assert span.status.status_code is StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]


async def test_server_streaming_call_gets_one_span(
    echo_server: EchoServer, spans: SpanRecorder
) -> None:
    assert [m async for m in echo_server.count(b"go")] == [b"0", b"1", b"2"]

    span = spans.named(f"{SERVICE}/Count")
    assert span.kind is SpanKind.SERVER
    assert span.attributes is not None
    assert span.attributes["rpc.method"] == "Count"
    assert span.attributes["rpc.grpc.status_code"] == 0


async def test_stream_aborted_midway_records_its_status_code(
    echo_server: EchoServer, spans: SpanRecorder
) -> None:
    received = []
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for message in echo_server.count(b"abort-midway"):
            received.append(message)
    assert received == [b"0"]
    assert raised.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED

    (span,) = await spans.wait_for(f"{SERVICE}/Count")
    assert span.attributes is not None
    assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]


async def test_stream_cancelled_by_the_client_is_cancelled(
    echo_server: EchoServer, spans: SpanRecorder
) -> None:
    call = echo_server.count(b"hang")
    assert await call.read() == b"0"
    call.cancel()

    (span,) = await spans.wait_for(f"{SERVICE}/Count")
    assert span.attributes is not None
    assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.CANCELLED.value[0]


@pytest.mark.parametrize("streaming", [False, True])
async def test_callers_trace_context_is_continued(
    echo_server: EchoServer, spans: SpanRecorder, streaming: bool
) -> None:
    metadata = (("traceparent", TRACEPARENT), ("tracestate", "advisor=app1"))
    if streaming:
        _ = [m async for m in echo_server.count(b"go", metadata)]
    else:
        await echo_server.say(b"hi", metadata)

    span = spans.named(f"{SERVICE}/{'Count' if streaming else 'Say'}")
    assert format(span.context.trace_id, "032x") == CALLER_TRACE_ID
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == CALLER_SPAN_ID
    assert span.parent.is_remote
    assert span.context.trace_state.get("advisor") == "app1"


async def test_health_checks_are_not_traced(echo_server: EchoServer, spans: SpanRecorder) -> None:
    stub = health_pb2_grpc.HealthStub(echo_server.channel)
    for _ in range(3):
        response = await stub.Check(health_pb2.HealthCheckRequest())
        assert response.status == health_pb2.HealthCheckResponse.SERVING
    await echo_server.say(b"hi")  # proves the exporter is live

    assert [s.name for s in spans.finished()] == [f"{SERVICE}/Say"]


@pytest.mark.parametrize("streaming", [False, True])
async def test_handler_spans_nest_under_the_server_span(
    echo_server: EchoServer, spans: SpanRecorder, streaming: bool
) -> None:
    if streaming:
        _ = [m async for m in echo_server.count(b"child")]
    else:
        await echo_server.say(b"child")

    server = spans.named(f"{SERVICE}/{'Count' if streaming else 'Say'}")
    children = [s for s in spans.finished() if s is not server and s.name != server.name]
    assert children, "the handler's spans were not exported"
    for child in children:
        assert child.parent is not None
        assert child.parent.span_id == server.context.span_id
        assert child.context.trace_id == server.context.trace_id


async def test_rpcs_are_counted_by_method_and_status(
    echo_server: EchoServer, metric_recorder: MetricRecorder, spans: SpanRecorder
) -> None:
    await echo_server.say(b"a")
    await echo_server.say(b"b")
    with pytest.raises(grpc.aio.AioRpcError):
        await echo_server.say(b"not-found")
    await health_pb2_grpc.HealthStub(echo_server.channel).Check(health_pb2.HealthCheckRequest())
    await spans.wait_for(f"{SERVICE}/Say", count=3)  # an RPC is counted before its span ends

    counts = {
        (a["rpc.method"], a["rpc.grpc.status_code"]): p.count  # type: ignore[attr-defined]
        for a, p in metric_recorder.points("rpc.server.duration")
    }
    assert counts == {("Say", 0): 2, ("Say", 5): 1}


class _RecordingSampler(Sampler):
    """Samples everything and keeps the attributes each span was started with."""

    def __init__(self) -> None:
        self.seen: list[dict[str, object]] = []

    def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None):  # type: ignore[no-untyped-def]
        self.seen.append(dict(attributes or {}))
        return ALWAYS_ON.should_sample(parent_context, trace_id, name, kind, attributes, links)

    def get_description(self) -> str:
        return "recording"


async def test_the_span_starts_with_the_method_and_peer_attributes() -> None:
    """All of them go to ``start_span`` (the sampler sees them), in one mapping: setting the
    peer's afterwards cost a second attribute clean-up under the span's lock."""
    sampler = _RecordingSampler()
    memory = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    server, port = await start_echo_server(server_interceptor(tracer_provider=provider))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            echo = EchoServer(channel, f"127.0.0.1:{port}")
            await echo.say(b"one")
            await echo.say(b"two")  # same peer: its attributes come from the method's cache
    finally:
        await server.stop(None)

    assert len(sampler.seen) == 2
    for seen in sampler.seen:
        assert seen["rpc.method"] == "Say"
        assert seen["network.peer.address"] == "127.0.0.1"
        assert isinstance(seen["network.peer.port"], int) and seen["network.peer.port"] > 0
    finished = memory.get_finished_spans()
    assert [s.attributes["network.peer.port"] for s in finished] == [  # type: ignore[index]
        seen["network.peer.port"] for seen in sampler.seen
    ]
    provider.shutdown()


def test_a_methods_peer_attributes_are_kept_for_a_bounded_number_of_peers() -> None:
    method = _Method(
        name=f"{SERVICE}/Say", service=SERVICE, method="Say", attributes={"rpc.method": "Say"}
    )
    first = method.span_attributes("ipv4:10.0.0.1:1000")
    assert first == {
        "rpc.method": "Say",
        "network.peer.address": "10.0.0.1",
        "network.peer.port": 1000,
    }
    assert method.span_attributes("ipv4:10.0.0.1:1000") is first
    assert method.span_attributes("ipv6:[::1]:7") == {
        "rpc.method": "Say",
        "network.peer.address": "::1",
        "network.peer.port": 7,
    }
    for port in range(_MAX_PEERS):
        method.span_attributes(f"ipv4:10.0.0.2:{port}")
    assert len(method.by_peer) <= _MAX_PEERS
    assert method.attributes == {"rpc.method": "Say"}  # the method's own are left as they were
