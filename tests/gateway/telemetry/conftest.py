"""Telemetry fixtures: the process's global providers with an in-memory span exporter, and a
tiny real grpc.aio server behind the telemetry interceptor.

The global tracer provider can be set once per process, so it is set once per session and its
exporter is cleared before every test.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.telemetry import Metrics, Telemetry, server_interceptor
from tests.gateway.telemetry.telemetry_helpers import (
    EchoServer,
    MetricRecorder,
    SpanRecorder,
    start_echo_server,
)


@pytest.fixture(scope="session")
def global_telemetry() -> Iterator[tuple[Telemetry, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    with pytest.MonkeyPatch.context() as env:
        for key in [k for k in os.environ if k.startswith("OTEL_")]:
            env.delenv(key)
        telemetry = Telemetry.configure(span_exporters=[exporter])
    yield telemetry, exporter
    telemetry.shutdown()


@pytest.fixture
def spans(global_telemetry: tuple[Telemetry, InMemorySpanExporter]) -> SpanRecorder:
    telemetry, exporter = global_telemetry
    telemetry.tracer_provider.force_flush()
    exporter.clear()
    return SpanRecorder(telemetry, exporter)


@pytest.fixture
def metric_recorder() -> Iterator[MetricRecorder]:
    """A private meter provider per test, so counts do not leak between tests."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    yield MetricRecorder(Metrics.from_provider(provider), reader)
    provider.shutdown()


@pytest.fixture
async def echo_server(
    spans: SpanRecorder, metric_recorder: MetricRecorder
) -> AsyncIterator[EchoServer]:
    """The echo servicer behind ``server_interceptor`` on the global provider."""
    server, port = await start_echo_server(server_interceptor(metrics=metric_recorder.metrics))
    address = f"127.0.0.1:{port}"
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            yield EchoServer(channel, address)
    finally:
        await server.stop(None)


@pytest.fixture
def clean_otel_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No OTEL_* from the developer's shell; set what a test needs on the returned patcher."""
    for key in [k for k in os.environ if k.startswith("OTEL_")]:
        monkeypatch.delenv(key)
    return monkeypatch
