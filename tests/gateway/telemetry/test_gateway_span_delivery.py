"""The real gateway's default (lean) spans of a batched burst reach an OTLP/gRPC collector
through the batch span processor and the exporter leadgw configures, every span with its
attributes and both directions of the batch links."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PB2Span

from gateway.server import start
from gateway.settings import Settings
from gateway.telemetry._exporters import otlp_grpc_span_exporter
from gateway.telemetry._otlp_wire import WireOTLPSpanExporter
from gateway.telemetry.setup import span_processor
from tests.gateway.telemetry.telemetry_helpers import SpanRecorder, held_burst
from tests.gateway.telemetry.test_gateway_spans import always_batching_repository
from tests.gateway.telemetry.test_otlp_wire import TraceReceiver, serve

SCORE = "leadgw.v1.LeadService/ScoreLeads"
BATCH = "batch lead_scorer/1"
LEADS = 300  # per request of the burst


def _attributes(span: PB2Span) -> dict[str, Any]:
    return {kv.key: getattr(kv.value, str(kv.value.WhichOneof("value"))) for kv in span.attributes}


async def test_lean_spans_of_a_batched_burst_reach_the_collector_whole(
    spans: SpanRecorder, tmp_path: Path, clean_otel_env: pytest.MonkeyPatch
) -> None:
    settings = Settings(
        port=0,
        data_dir=tmp_path,
        load_demo_corpus=False,
        model_repository=always_batching_repository(tmp_path),
    )
    gateway = await start(settings)
    try:
        await held_burst(gateway, calls=12, leads=LEADS)
        await spans.wait_for(SCORE, count=12)
    finally:
        await gateway.stop(grace=1, drain=0)
    finished = spans.finished()

    receiver = TraceReceiver()
    server, port = await serve(receiver)
    try:
        clean_otel_env.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"http://127.0.0.1:{port}")
        clean_otel_env.setenv("OTEL_EXPORTER_OTLP_TRACES_INSECURE", "true")
        exporter = otlp_grpc_span_exporter()
        assert isinstance(exporter, WireOTLPSpanExporter)
        processor = span_processor(exporter)
        for span in finished:
            processor.on_end(span)
        await asyncio.to_thread(processor.shutdown)  # flushes; the receiver runs on this loop
    finally:
        await server.stop(None)

    received = {
        span.span_id: span
        for request in receiver.requests
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    }
    assert sorted(received) == sorted(s.context.span_id.to_bytes(8, "big") for s in finished)
    servers = [s for s in received.values() if s.name == SCORE]
    batches = {s.span_id: s for s in received.values() if s.name == BATCH}
    assert len(servers) == 12
    assert batches, "the burst ran in batches of several requests: each has its span"
    waits = [s for s in received.values() if s.name == "queue wait"]
    assert {w.parent_span_id for w in waits} <= {s.span_id for s in servers}
    batched = 0
    for sent in servers:
        attributes = _attributes(sent)
        assert {
            "rpc.system": "grpc",
            "rpc.service": "leadgw.v1.LeadService",
            "rpc.method": "ScoreLeads",
            "network.peer.address": "127.0.0.1",
            "rpc.grpc.status_code": 0,
        }.items() <= attributes.items()
        assert attributes["network.peer.port"] > 0
        assert {"leadgw.batch.id", "leadgw.batch.size", "leadgw.batch.queue_wait_ms"} <= set(
            attributes
        )
        if int(attributes["leadgw.batch.size"]) == LEADS:
            # Alone in its batch (the held first run, or the last of the burst): lean tracing
            # gives such a batch a span only if its run was slow, so a link is not required.
            continue
        batched += 1
        # The request links to its batch's span, and that span links back to the request.
        (batch_id,) = [link.span_id for link in sent.links if link.span_id in batches]
        assert sent.span_id in {link.span_id for link in batches[batch_id].links}
        assert _attributes(batches[batch_id])["leadgw.batch.id"] == int(
            attributes["leadgw.batch.id"]
        )
    # 1,024-row batches hold 3 requests: at most the held first run and the last batch are alone.
    assert batched >= 10
