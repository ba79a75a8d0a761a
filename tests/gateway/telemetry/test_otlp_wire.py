"""The hand-written OTLP encoder decodes equal to the official one, and its exporter delivers.

Spans come from the real SDK (two resources, three scopes, limits that force drops), plus a few
built directly for what the SDK never produces (no scope, no end time, odd attribute values).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from enum import IntEnum, StrEnum
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.rpc.error_details_pb2 import RetryInfo
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HTTPSpanExporter,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.span import TraceState
from opentelemetry.trace.status import Status, StatusCode
from opentelemetry.util.types import AnyValue

from gateway.telemetry._exporters import span_exporters_from_env
from gateway.telemetry._otlp_wire import (
    ExportRequestEncoder,
    WireOTLPSpanExporter,
    encode_export_request,
)

SCALARS: dict[str, AnyValue] = {
    "s": "lead_scorer",
    "empty": "",
    "unicode": "héllo ✓ 日本語 🚀",
    "t": True,
    "f": False,
    "zero": 0,
    "neg": -1,
    "big": 2**40,
    "int32_edge": 2**31,
    "int64_min": -(2**63),
    "int64_max": 2**63 - 1,
    "pi": 3.25,
    "neg_zero": -0.0,
    "inf": float("inf"),
}
SEQUENCES: dict[str, AnyValue] = {
    "strs": ["a", "", "ü"],
    "bools": [True, False],
    "ints": [1, -2, 2**50],
    "floats": [0.5, -1.25],
    "empty_seq": [],
}
# Kept by the SDK's "extended attributes" and encoded by the official encoder too.
EXTENDED: dict[str, AnyValue] = {
    "raw": b"\x00\xff",
    "nested": {"a": 1, "b": ["x", None]},
    "mixed": [1, "x"],
}


class Color(StrEnum):
    RED = "red"


class Level(IntEnum):
    HIGH = 3


REMOTE_PARENT = SpanContext(
    trace_id=0x0AF7651916CD43DD8448EB211C80319C,
    span_id=0xB7AD6B7169203331,
    is_remote=True,
    trace_flags=TraceFlags(TraceFlags.SAMPLED),
    trace_state=TraceState([("vendor", "v1"), ("other", "x=y")]),
)
LINKED = SpanContext(trace_id=2**127 + 5, span_id=2**63 + 7, is_remote=False)


def provider(resource: Resource, exporter: InMemorySpanExporter, **limits: int) -> TracerProvider:
    tracer_provider = TracerProvider(resource=resource, span_limits=SpanLimits(**limits))
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    return tracer_provider


def record_spans() -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    service = Resource(
        {"service.name": "leadgw", "host.cores": 2, "deploy.canary": False, "weights": [0.5]},
        schema_url="https://opentelemetry.io/schemas/1.21.0",
    )
    worker = Resource({"service.name": "leadgw-worker"})
    gateway = provider(service, exporter)
    limited = provider(
        worker,
        exporter,
        max_attributes=3,
        max_events=1,
        max_links=1,
        max_event_attributes=1,
        max_link_attributes=1,
    )

    server = gateway.get_tracer("leadgw.server", "1.2.3", "https://example.com/schema")
    runtime = gateway.get_tracer("leadgw.runtime", attributes={"runtime": "onnx", "threads": 2})
    with server.start_as_current_span(
        "Score",
        kind=SpanKind.SERVER,
        context=trace.set_span_in_context(NonRecordingSpan(REMOTE_PARENT)),
        attributes={**SCALARS, **SEQUENCES, **EXTENDED},
        links=[Link(LINKED, {"link.kind": "batch", "n": 3}), Link(REMOTE_PARENT)],
    ) as span:
        span.add_event(
            "queued", {"queue.depth": 4, "tag": "ü"}, timestamp=1_700_000_000_000_000_001
        )
        span.add_event("no attributes")
        with runtime.start_as_current_span("encode") as child:
            child.set_status(Status(StatusCode.ERROR, "tokenizer failed: ✗"))
        with runtime.start_as_current_span("ok") as child:
            child.set_status(Status(StatusCode.OK))
        with runtime.start_as_current_span("error without description") as child:
            child.set_status(Status(StatusCode.ERROR))
    for kind in SpanKind:
        with server.start_as_current_span(f"root {kind.name}", kind=kind, attributes={"i": 1}):
            pass

    batch = limited.get_tracer("leadgw.batch")
    with batch.start_as_current_span(
        "batch",
        attributes={f"a{i}": i for i in range(5)},
        links=[Link(REMOTE_PARENT), Link(LINKED, {"x": 1, "y": 2})],  # the SDK keeps the last
    ) as span:
        for i in range(3):
            span.add_event(f"e{i}", {"p": i, "q": i})
    # The same scope as the gateway's, under another resource: a group of its own.
    with limited.get_tracer("leadgw.server", "1.2.3").start_as_current_span("worker root"):
        pass
    return list(exporter.get_finished_spans())


def built_spans(recorded: list[ReadableSpan]) -> list[ReadableSpan]:
    """Spans the SDK does not make: no scope, no end time, no name, a resource equal to another
    but a different object, and two resources equal in value but not in hash (1 and 1.0)."""
    context = SpanContext(trace_id=1, span_id=2, is_remote=False)
    equal_copy = Resource(dict(recorded[0].resource.attributes), recorded[0].resource.schema_url)
    return [
        ReadableSpan(name="no scope", context=context, resource=Resource({"n": 1})),
        ReadableSpan(name="float twin", context=context, resource=Resource({"n": 1.0})),
        ReadableSpan(
            name="",
            context=context,
            parent=SpanContext(trace_id=1, span_id=3, is_remote=True),
            resource=equal_copy,
            instrumentation_scope=InstrumentationScope("leadgw.server", "1.2.3", None),
            attributes={"tuple": (1, 2), "none": None},
            events=[Event("", attributes={}, timestamp=5)],
            start_time=10,
            end_time=None,
        ),
    ]


@pytest.fixture(scope="module")
def spans() -> list[ReadableSpan]:
    recorded = record_spans()
    return recorded + built_spans(recorded)


def decoded(
    spans: list[ReadableSpan], encoder: ExportRequestEncoder | None = None
) -> ExportTraceServiceRequest:
    payload = encoder.encode(spans) if encoder else encode_export_request(spans)
    return ExportTraceServiceRequest.FromString(payload)


def test_the_batch_covers_the_cases(spans: list[ReadableSpan]) -> None:
    """Guards the equality tests below against testing too little."""
    official = encode_spans(spans)
    # service (its equal copy joins it), worker, {"n": 1} and {"n": 1.0} (equal, unequal hashes)
    assert len(official.resource_spans) == 4
    scopes = [s for r in official.resource_spans for s in r.scope_spans]
    assert {s.scope.name for s in scopes} >= {"leadgw.server", "leadgw.runtime", "leadgw.batch"}
    by_name = {span.name: span for s in scopes for span in s.spans}
    score, batch = by_name["Score"], by_name["batch"]
    assert score.parent_span_id and score.trace_state and len(score.links) == 2
    assert {a.key for a in score.attributes} >= {*SCALARS, *SEQUENCES, *EXTENDED}
    assert batch.dropped_attributes_count and batch.dropped_events_count
    assert batch.dropped_links_count and batch.links[0].dropped_attributes_count
    assert batch.events[0].dropped_attributes_count


def test_batch_decodes_equal_to_the_official_encoder(spans: list[ReadableSpan]) -> None:
    assert decoded(spans) == encode_spans(spans)


def test_each_span_alone_decodes_equal(spans: list[ReadableSpan]) -> None:
    for span in spans:
        assert decoded([span]) == encode_spans([span]), span.name


def test_no_spans_is_an_empty_request() -> None:
    assert encode_export_request([]) == b""


def test_a_reused_encoder_with_a_small_cache_stays_exact(spans: list[ReadableSpan]) -> None:
    """Cache hits, and clearing it mid-batch, change nothing."""
    encoder = ExportRequestEncoder(max_cached_attributes=5)
    for _ in range(3):
        assert decoded(spans, encoder) == encode_spans(spans)
    for span in spans:
        assert decoded([span], encoder) == encode_spans([span]), span.name


def test_true_and_one_do_not_share_a_cached_encoding() -> None:
    context = SpanContext(trace_id=1, span_id=2, is_remote=False)
    spans = [
        ReadableSpan(name="n", context=context, attributes={"v": value}, resource=Resource({}))
        for value in (1, True, 1.0, "1")
    ]
    encoder = ExportRequestEncoder()
    for span in spans + spans:
        value = decoded([span], encoder).resource_spans[0].scope_spans[0].spans[0].attributes[0]
        assert value == encode_spans([span]).resource_spans[0].scope_spans[0].spans[0].attributes[0]


def test_values_the_official_encoder_refuses_are_logged_and_left_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The SDK cleans what reaches a span, but a ReadableSpan built directly can hold anything."""
    context = SpanContext(trace_id=1, span_id=2, is_remote=False)
    attributes: dict[str, Any] = {
        "before": 1,
        "huge": 2**64,
        "in_seq": [1, -(2**63) - 1],
        "set": {1},
        "surrogate": "\ud800",
        "color": Color.RED,
        "level": Level.HIGH,
        "after": "x",
    }
    span = ReadableSpan(name="odd", context=context, resource=Resource({}), attributes=attributes)

    with caplog.at_level(logging.ERROR):
        request = decoded([span])
        wire_log = [r.getMessage() for r in caplog.records]
        caplog.clear()
        official = encode_spans([span])
        official_log = [r.getMessage() for r in caplog.records]

    assert request == official
    keys = [a.key for a in request.resource_spans[0].scope_spans[0].spans[0].attributes]
    assert keys == ["before", "color", "level", "after"]
    assert wire_log == official_log
    assert wire_log[0] == "Failed to encode key huge: Value out of range: 18446744073709551616"
    assert len(wire_log) == 4


# ---- the exporter over a real gRPC connection ----


class TraceReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    """Records each request and its metadata; answers UNAVAILABLE ``failures`` times first,
    asking for an immediate retry."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.calls = 0
        self.requests: list[ExportTraceServiceRequest] = []
        self.metadata: list[dict[str, str | bytes]] = []

    async def Export(
        self, request: ExportTraceServiceRequest, context: grpc.aio.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self.calls += 1
        if self.calls <= self.failures:
            retry = RetryInfo(retry_delay=Duration(nanos=1_000_000)).SerializeToString()
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                "collector restarting",
                trailing_metadata=(("google.rpc.retryinfo-bin", retry),),
            )
        self.requests.append(request)
        self.metadata.append(dict(context.invocation_metadata() or ()))
        return trace_service_pb2.ExportTraceServiceResponse()


async def serve(receiver: TraceReceiver) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[TraceReceiver, int]]:
    receiver = TraceReceiver()
    server, port = await serve(receiver)
    try:
        yield receiver, port
    finally:
        await server.stop(None)


async def export(exporter: WireOTLPSpanExporter, spans: list[ReadableSpan]) -> SpanExportResult:
    """The exporter blocks; the receiver runs on this event loop."""
    try:
        return await asyncio.to_thread(exporter.export, spans)
    finally:
        exporter.shutdown()


async def test_exporter_configured_by_env_delivers_what_the_official_encoder_would(
    receiver: tuple[TraceReceiver, int],
    clean_otel_env: pytest.MonkeyPatch,
    spans: list[ReadableSpan],
) -> None:
    trace_receiver, port = receiver
    clean_otel_env.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"http://127.0.0.1:{port}")
    clean_otel_env.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-tenant=acme")
    clean_otel_env.setenv("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip")

    result = await export(WireOTLPSpanExporter(), spans)

    assert result == SpanExportResult.SUCCESS
    # Fails loudly if the SDK stops sending what _translate_data returns through our stub.
    assert trace_receiver.requests == [encode_spans(spans)]
    assert trace_receiver.requests[0].resource_spans
    assert trace_receiver.metadata[0]["x-tenant"] == "acme"


async def test_exporter_still_sends_bytes_after_reconnecting(
    clean_otel_env: pytest.MonkeyPatch, spans: list[ReadableSpan]
) -> None:
    """UNAVAILABLE makes the SDK rebuild its channel and client (from ``_stub``)."""
    trace_receiver = TraceReceiver(failures=1)
    server, port = await serve(trace_receiver)
    try:
        result = await export(
            WireOTLPSpanExporter(endpoint=f"127.0.0.1:{port}", insecure=True), spans
        )
    finally:
        await server.stop(None)

    assert result == SpanExportResult.SUCCESS
    assert trace_receiver.calls == 2
    assert trace_receiver.requests == [encode_spans(spans)]


@pytest.mark.parametrize(
    ("protocol", "expected"),
    [("grpc", WireOTLPSpanExporter), ("http/protobuf", HTTPSpanExporter)],
)
def test_env_picks_the_wire_exporter_for_grpc_only(
    clean_otel_env: pytest.MonkeyPatch, protocol: str, expected: type
) -> None:
    clean_otel_env.setenv("OTEL_TRACES_EXPORTER", "otlp")
    clean_otel_env.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", protocol)
    exporters = span_exporters_from_env()
    try:
        assert [type(e) for e in exporters] == [expected]
    finally:
        for exporter in exporters:
            exporter.shutdown()


def test_the_start_up_self_check_passes_on_the_pinned_exporter() -> None:
    from gateway.telemetry._otlp_wire import disagreement

    assert disagreement() is None


class _DriftedEncoder(ExportRequestEncoder):
    """Plays a library release whose encoding the fast path no longer matches."""

    def encode(self, spans):  # type: ignore[no-untyped-def]
        return super().encode(spans[:1])


def test_a_fast_encoder_that_disagrees_falls_back_to_the_official_exporter(caplog) -> None:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    from gateway.telemetry._exporters import otlp_grpc_span_exporter
    from gateway.telemetry._otlp_wire import WireOTLPSpanExporter

    with caplog.at_level("WARNING", logger="gateway.telemetry._exporters"):
        fallback = otlp_grpc_span_exporter(_DriftedEncoder())
    try:
        assert type(fallback) is OTLPSpanExporter
        assert "official span encoder" in caplog.text
    finally:
        fallback.shutdown()
    fast = otlp_grpc_span_exporter()
    try:
        assert isinstance(fast, WireOTLPSpanExporter)
    finally:
        fast.shutdown()
