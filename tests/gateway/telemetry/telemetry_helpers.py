"""The tiny servicer and recorders the telemetry tests share (fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from opentelemetry import trace
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.telemetry import Metrics, Telemetry
from leadgw_client.pb.leadgw.v1 import lead_service_pb2_grpc as pb_grpc

SERVICE = "test.v1.Echo"
TRACER = "leadgw.test"


@dataclass
class SpanRecorder:
    """Spans the global provider finished, oldest first."""

    telemetry: Telemetry
    exporter: InMemorySpanExporter

    def finished(self) -> list[ReadableSpan]:
        self.telemetry.tracer_provider.force_flush()
        return list(self.exporter.get_finished_spans())

    def clear(self) -> None:
        """Forgets the spans finished so far (after flushing them)."""
        self.telemetry.tracer_provider.force_flush()
        self.exporter.clear()

    def named(self, name: str) -> ReadableSpan:
        matches = [s for s in self.finished() if s.name == name]
        assert len(matches) == 1, [s.name for s in self.finished()]
        return matches[0]

    async def wait_for(self, name: str, count: int = 1) -> list[ReadableSpan]:
        """For spans that may end after the client has seen its status: ``context.abort``
        sends the status before it raises, and a cancelled handler ends after the client."""
        for _ in range(500):
            matches = [s for s in self.finished() if s.name == name]
            if len(matches) >= count:
                assert len(matches) == count, matches
                return matches
            await asyncio.sleep(0.01)
        raise AssertionError(f"fewer than {count} spans {name!r}")


def without_otel_env() -> dict[str, str]:
    """This environment minus any OTEL_* a developer may have exported."""
    return {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}


@dataclass
class MetricRecorder:
    metrics: Metrics
    reader: InMemoryMetricReader

    def points(self, name: str) -> list[tuple[dict[str, object], object]]:
        """(attributes, point) of every point of the metric ``name``."""
        data: MetricsData | None = self.reader.get_metrics_data()
        found = []
        for resource_metrics in data.resource_metrics if data else ():
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    if metric.name == name:
                        found += [(dict(p.attributes or {}), p) for p in metric.data.data_points]
        return found


# ---- the tiny servicer: bytes in, bytes out, behaviour chosen by the request ----


async def say(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    if request == b"not-found":
        await context.abort(grpc.StatusCode.NOT_FOUND, "no such lead")
    if request == b"unavailable":
        await context.abort(grpc.StatusCode.UNAVAILABLE, "model reloading")
    if request == b"raise":
        raise RuntimeError("boom")
    if request == b"child":
        with trace.get_tracer(TRACER).start_as_current_span("child work"):
            await asyncio.sleep(0)
    if request == b"log":
        logging.getLogger("leadgw.test").info("inside the handler")
    return b"echo:" + request


async def count(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    for i in range(3):
        if request == b"child":
            with trace.get_tracer(TRACER).start_as_current_span(f"step {i}"):
                await asyncio.sleep(0)
        yield str(i).encode()
        if request == b"abort-midway":
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many summaries")
        if request == b"hang":
            await asyncio.Event().wait()  # until the client cancels


@dataclass
class EchoServer:
    channel: grpc.aio.Channel
    address: str

    async def say(self, request: bytes, metadata: Sequence[tuple[str, str]] = ()) -> bytes:
        return await self.channel.unary_unary(f"/{SERVICE}/Say")(request, metadata=metadata)

    def count(self, request: bytes, metadata: Sequence[tuple[str, str]] = ()):
        return self.channel.unary_stream(f"/{SERVICE}/Count")(request, metadata=metadata)


async def start_echo_server(interceptor: grpc.aio.ServerInterceptor) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server(interceptors=[interceptor])
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                SERVICE,
                {
                    "Say": grpc.unary_unary_rpc_method_handler(say),
                    "Count": grpc.unary_stream_rpc_method_handler(count),
                },
            )
        ]
    )
    health_servicer = health.aio.HealthServicer()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


class HeldRun:
    """Makes the batcher's first run wait (on its executor thread) until ``release`` is set, and
    records how many rows that run holds."""

    def __init__(self, batcher) -> None:
        self.release = threading.Event()
        self.rows = 0
        self._first = True
        self._run_batch = batcher._run_batch
        batcher._run_batch = self._held

    def _held(self, inputs):
        if self._first:
            self._first = False
            self.rows = int(inputs.shape[0])
            self.release.wait(timeout=30)
        return self._run_batch(inputs)


async def held_burst(gateway, calls: int = 12, leads: int = 300) -> None:
    """``calls`` ScoreLeads requests of ``leads`` leads at once, meeting in batches by the order
    of events, not by timing. The first request finds the batcher idle and runs at once (with
    any admitted before its run began: one, two or three of them, by how fast the machine
    decodes); that run is held until every other request has queued behind it. (12 x 300 rows
    stay under the 4,096-row queue; 1,024-row batches hold 3 each.)"""
    from leads_helpers import sample_leads, score_request

    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub = pb_grpc.LeadServiceStub(channel)
        batcher = gateway.repository.get("lead_scorer")._batcher
        held = HeldRun(batcher)
        request = score_request(sample_leads(leads))
        replies = asyncio.gather(*(stub.ScoreLeads(request) for _ in range(calls)))
        async with asyncio.timeout(30):
            while held.rows == 0 or held.rows + batcher._queued_rows < calls * leads:
                await asyncio.sleep(0.005)
        held.release.set()
        await replies
