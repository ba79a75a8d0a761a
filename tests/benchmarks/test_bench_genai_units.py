"""The GenAI bench's parts on their own: tracing levels, bad options, the LLM stand-in's protocol
and the discard collector."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from openai import AsyncOpenAI
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

from benchmarks.discard_collector import DiscardTraces
from benchmarks.fake_llm import FakeLLM, Pacing, set_pacing
from benchmarks.tracing_suite import parse_levels, tracing_env


def test_parse_levels_adds_off_first_and_normalises() -> None:
    assert parse_levels("0.01,1.0") == ("off", "0.01", "1")
    assert parse_levels("off, 0.5, off") == ("off", "0.5")
    for bad in ("0", "1.5", "some"):
        with pytest.raises(ValueError, match="--tracing"):
            parse_levels(bad)


def test_tracing_env_ignores_inherited_otel(monkeypatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert tracing_env("off", None)["OTEL_TRACES_EXPORTER"] == "none"
    env = tracing_env("0.01", "127.0.0.1:4317")
    assert "OTEL_SDK_DISABLED" not in env
    assert env["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
    assert env["OTEL_TRACES_SAMPLER_ARG"] == "0.01"
    assert env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] == "http://127.0.0.1:4317"


def test_tracing_needs_a_leadgw_target(bench) -> None:
    run = bench("--targets", "onnx-floor", "--tracing", "0.01", "--no-progress", timeout=60)
    assert run.returncode == 2
    assert "--tracing needs a leadgw target" in run.stderr


def test_bad_tracing_level_is_a_usage_error(bench) -> None:
    run = bench("--targets", "scoreleads", "--tracing", "2", "--no-progress", timeout=60)
    assert run.returncode == 2
    assert "sampling ratio is in (0, 1]" in run.stderr


async def test_fake_llm_streams_the_openai_protocol_with_its_pacing() -> None:
    llm = FakeLLM(Pacing(first_delay_s=0.0, gap_s=0.0, chunks=3))
    server = await asyncio.start_server(llm.serve, "127.0.0.1", 0)
    address = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    client = AsyncOpenAI(base_url=f"http://{address}/v1", api_key="x", max_retries=0)
    try:
        await set_pacing(address, Pacing(first_delay_s=0.0, gap_s=0.0, chunks=5))
        stream = await client.chat.completions.create(
            model="any",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        texts, usage = [], None
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                texts.append(chunk.choices[0].delta.content)
            usage = chunk.usage or usage
        assert len(texts) == 5  # the pacing set over the wire, not the one it started with
        assert usage is not None and usage.completion_tokens == 5
        assert llm.streams == 1
    finally:
        await client.close()
        llm.stop()
        server.close()


async def test_discard_collector_accepts_and_counts_spans() -> None:
    servicer = DiscardTraces()
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        request = trace_service_pb2.ExportTraceServiceRequest()
        scope = request.resource_spans.add().scope_spans.add()
        for i in range(3):
            scope.spans.add(name=f"span{i}", trace_id=bytes(16), span_id=bytes(8))
        assert isinstance(scope.spans[0], trace_pb2.Span)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = trace_service_pb2_grpc.TraceServiceStub(channel)
            answer = await stub.Export(request, timeout=5)
        assert not answer.HasField("partial_success")
        assert servicer.counts() == {"exports": 1, "spans": 3}
    finally:
        await server.stop(None)
