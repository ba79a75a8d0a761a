"""A ratio sampler is asked about a call without trace context before any span is made for it:
a dropped call makes none, a sampled one gets the trace id it was decided on. Real grpc.aio
server and client, the SDK's tracer provider."""

from __future__ import annotations

import grpc
import pytest
from opentelemetry.sdk.trace import Tracer, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_ON,
    ParentBasedTraceIdRatio,
    Sampler,
    TraceIdRatioBased,
)

from gateway.telemetry import Telemetry, server_interceptor
from gateway.telemetry.root_sampling import DrawnTraceIds, RootSampling
from tests.gateway.telemetry.telemetry_helpers import SERVICE, start_echo_server

TRACEPARENT_SAMPLED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


async def _say(provider: TracerProvider, calls: int, metadata: tuple = ()) -> None:
    server, port = await start_echo_server(server_interceptor(tracer_provider=provider))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            say = channel.unary_unary(f"/{SERVICE}/Say")
            for _ in range(calls):
                assert await say(b"x", metadata=metadata) == b"echo:x"
    finally:
        await server.stop(None)


def _provider(sampler: Sampler) -> tuple[TracerProvider, InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler, id_generator=DrawnTraceIds())
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return provider, memory


@pytest.mark.parametrize("sampler", [TraceIdRatioBased(0.0), ParentBasedTraceIdRatio(0.0)])
async def test_a_call_without_trace_context_that_the_ratio_drops_starts_no_span(
    monkeypatch: pytest.MonkeyPatch, sampler: Sampler
) -> None:
    """Dropped calls cost no span object at all (before, the SDK made one, unrecorded); a call
    with a caller's sampled trace context is still handed to the SDK (a parent-based sampler
    follows its parent)."""
    started: list[str] = []
    real_start_span = Tracer.start_span

    def counting(self: Tracer, name: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        started.append(name)
        return real_start_span(self, name, *args, **kwargs)

    monkeypatch.setattr(Tracer, "start_span", counting)
    provider, memory = _provider(sampler)
    await _say(provider, 3)
    assert started == []
    await _say(provider, 1, metadata=(("traceparent", TRACEPARENT_SAMPLED),))
    assert started == [f"{SERVICE}/Say"]
    recorded = len(memory.get_finished_spans())
    assert recorded == (1 if isinstance(sampler, ParentBasedTraceIdRatio) else 0)
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


def test_only_a_ratio_sampler_with_drawn_ids_is_asked_ahead() -> None:
    """Another sampler may decide on the span's name, kind or attributes, which are not known
    ahead in the same form; without ``DrawnTraceIds`` the id cannot be handed to the SDK; a
    ratio of 1 has nothing to decide."""
    ratio_ids = TracerProvider(sampler=TraceIdRatioBased(0.1), id_generator=DrawnTraceIds())
    assert RootSampling.of(ratio_ids.get_tracer("t")) is not None
    assert RootSampling.of(TracerProvider(sampler=TraceIdRatioBased(0.1)).get_tracer("t")) is None
    always_on = TracerProvider(sampler=ALWAYS_ON, id_generator=DrawnTraceIds())
    assert RootSampling.of(always_on.get_tracer("t")) is None
    # A ratio of 1 samples every call: nothing to decide ahead; just below 1, there is.
    for sampler, asked in [
        (TraceIdRatioBased(1.0), False),
        (ParentBasedTraceIdRatio(1.0), False),
        (ParentBasedTraceIdRatio(0.999), True),
    ]:
        provider = TracerProvider(sampler=sampler, id_generator=DrawnTraceIds())
        assert (RootSampling.of(provider.get_tracer("t")) is not None) is asked


def test_a_staged_id_is_taken_once_and_only_on_its_thread() -> None:
    import threading

    ids = DrawnTraceIds()
    drawn = ids.draw_trace_id()
    ids.stage(drawn)
    elsewhere: list[int] = []
    thread = threading.Thread(target=lambda: elsewhere.append(ids.generate_trace_id()))
    thread.start()
    thread.join()
    assert elsewhere[0] != drawn
    assert ids.generate_trace_id() == drawn
    assert ids.generate_trace_id() != drawn


def test_the_gateways_tracer_draws_its_ids_ahead(clean_otel_env: pytest.MonkeyPatch) -> None:
    """The provider the gateway configures asks a ratio sampler from the environment ahead."""
    clean_otel_env.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    clean_otel_env.setenv("OTEL_TRACES_SAMPLER_ARG", "0.01")
    telemetry = Telemetry.configure(span_exporters=[InMemorySpanExporter()], set_global=False)
    try:
        assert RootSampling.of(telemetry.tracer_provider.get_tracer("t")) is not None
    finally:
        telemetry.shutdown()
