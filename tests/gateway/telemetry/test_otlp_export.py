"""Spans and metrics reach a real OTLP receiver over the wire, configured only by OTEL_*.

This process's global providers are already set (by the session fixture), so the exporting side
runs in a subprocess that configures telemetry, records a span and a metric, and shuts down.
"""

from __future__ import annotations

import asyncio
import sys
import textwrap
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from tests.gateway.telemetry.telemetry_helpers import without_otel_env

ROOT = Path(__file__).resolve().parents[3]

EXPORTING_PROCESS = textwrap.dedent(
    """
    from opentelemetry import trace
    from gateway.telemetry import Telemetry

    telemetry = Telemetry.configure()
    with trace.get_tracer("leadgw.test").start_as_current_span("probe", attributes={"n": 7}):
        telemetry.metrics.record_batch("lead_scorer", "1", rows=8, exec_s=0.002)
    telemetry.shutdown()
    """
)


class TraceReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: object
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self.requests.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()


class MetricsReceiver(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self) -> None:
        self.requests: list[metrics_service_pb2.ExportMetricsServiceRequest] = []

    async def Export(
        self, request: metrics_service_pb2.ExportMetricsServiceRequest, context: object
    ) -> metrics_service_pb2.ExportMetricsServiceResponse:
        self.requests.append(request)
        return metrics_service_pb2.ExportMetricsServiceResponse()


async def run_exporting_process(env: dict[str, str]) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        EXPORTING_PROCESS,
        cwd=ROOT,
        env={**without_otel_env(), **env},
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()
    assert b"Failed to export" not in stderr, stderr.decode()


def span_names(requests: list[trace_service_pb2.ExportTraceServiceRequest]) -> dict[str, str]:
    """span name → service.name of its resource."""
    names = {}
    for request in requests:
        for resource_spans in request.resource_spans:
            service = next(
                a.value.string_value
                for a in resource_spans.resource.attributes
                if a.key == "service.name"
            )
            for scope_spans in resource_spans.scope_spans:
                names |= {span.name: service for span in scope_spans.spans}
    return names


@pytest.fixture
async def grpc_receiver() -> AsyncIterator[tuple[int, TraceReceiver, MetricsReceiver]]:
    server = grpc.aio.server()
    traces, metrics = TraceReceiver(), MetricsReceiver()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(traces, server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(metrics, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield port, traces, metrics
    finally:
        await server.stop(None)


async def test_otlp_grpc_receives_spans_and_metrics(
    grpc_receiver: tuple[int, TraceReceiver, MetricsReceiver],
) -> None:
    port, traces, metrics = grpc_receiver
    await run_exporting_process(
        {
            "OTEL_SERVICE_NAME": "leadgw-under-test",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        }
    )

    assert span_names(traces.requests) == {"probe": "leadgw-under-test"}
    metric_names = {
        metric.name
        for request in metrics.requests
        for resource_metrics in request.resource_metrics
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
    }
    assert {"leadgw.batch.size", "leadgw.model.execution.duration"} <= metric_names


class _HttpTraceHandler(BaseHTTPRequestHandler):
    received: list[trace_service_pb2.ExportTraceServiceRequest]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/v1/traces":
            self.received.append(trace_service_pb2.ExportTraceServiceRequest.FromString(body))
        payload = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        """Quiet: the test asserts on what arrived."""


@pytest.fixture
def http_receiver() -> Iterator[tuple[int, list[trace_service_pb2.ExportTraceServiceRequest]]]:
    received: list[trace_service_pb2.ExportTraceServiceRequest] = []
    handler = type("Handler", (_HttpTraceHandler,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port, received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def test_otlp_http_receives_spans(
    http_receiver: tuple[int, list[trace_service_pb2.ExportTraceServiceRequest]],
) -> None:
    port, received = http_receiver
    await run_exporting_process(
        {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        }
    )

    assert span_names(received) == {"probe": "leadgw"}
