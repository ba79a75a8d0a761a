"""CPU one sampled request's tracing costs the gateway, by component (thread CPU time, µs).

Runs each step of the server span's life as leadgw runs it (``_RpcScope`` in
``gateway/telemetry/interceptor.py``, ``record_batch_stats`` in ``runtimes/tracing.py``, the
SDK's batch span processor, the OTLP/gRPC exporter) on its own, ``--n`` times per repetition,
and reports the minimum over ``--reps`` repetitions of the mean per call: the cost with the
caches warm and nothing else running, a floor for what a loaded worker pays.

    python scripts/span_cost.py [--n 5000] [--reps 7] [--no-export]

The export steps start ``benchmarks.discard_collector`` (a loopback OTLP/gRPC collector that
drops what it gets) in a subprocess; ``--no-export`` skips them.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk._shared_internal import BatchExportStrategy
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBasedTraceIdRatio
from opentelemetry.trace import SpanKind

from gateway.telemetry import interceptor
from gateway.telemetry._otlp_wire import ExportRequestEncoder, WireOTLPSpanExporter
from gateway.telemetry.logs import TraceContextFilter
from gateway.telemetry.root_spans import RootSpans
from runtimes.tracing import record_batch_stats

PEER = "ipv4:127.0.0.1:52144"
# What grpc.aio hands the interceptor for a bench request: no traceparent.
METADATA = (("user-agent", "grpc-python/1.85.3 grpc-c/52.0.0 (linux; chttp2)"),)
# A request from a caller that traces its own calls (W3C trace context), sampled and not.
CALLER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-"
METADATA_SAMPLED_CALLER = (("traceparent", CALLER + "01"), *METADATA)
METADATA_UNSAMPLED_CALLER = (("traceparent", CALLER + "00"), *METADATA)
METHOD_ATTRIBUTES = {
    "rpc.system": "grpc",
    "rpc.service": "leadgw.v1.LeadScoring",
    "rpc.method": "ScoreLeads",
}
NAME = "leadgw.v1.LeadScoring/ScoreLeads"


class _Null(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def per_call_us(step: Callable[[Any], None], make: Callable[[], Any], n: int, reps: int) -> float:
    """Min over ``reps`` of the thread CPU per ``step(item)``; items are made beforehand."""
    best = float("inf")
    for _ in range(reps):
        items = [make() for _ in range(n)]
        gc.collect()
        gc.disable()
        start = time.thread_time_ns()
        for item in items:
            step(item)
        took = time.thread_time_ns() - start
        gc.enable()
        best = min(best, took / n / 1e3)
    return best


def provider(sampled: bool, processor: str) -> TracerProvider:
    resource = Resource.create({"service.name": "leadgw", "service.instance.id": "x"})
    sampler = ParentBasedTraceIdRatio(1.0) if sampled else ALWAYS_OFF
    p = TracerProvider(resource=resource, sampler=sampler)
    if processor == "batch":
        # A schedule the run never reaches: the queue only grows (cleared between runs).
        p.add_span_processor(
            BatchSpanProcessor(
                _Null(),
                max_queue_size=1 << 20,
                schedule_delay_millis=3.6e6,
                max_export_batch_size=1 << 20,
            )
        )
    return p


def started(tracer: trace.Tracer) -> Any:
    return tracer.start_span(
        NAME, context=otel_context.Context(), kind=SpanKind.SERVER, attributes=METHOD_ATTRIBUTES
    )


def full_span(tracer: trace.Tracer) -> Any:
    span = started(tracer)
    span.set_attributes(interceptor._peer_attributes(PEER))
    record_batch_stats(span, queue_wait_s=0.0004, batch_size=3, batch_id=1234)
    span.set_attribute("rpc.grpc.status_code", 0)
    return span


class _Context:
    """What ``_RpcScope`` asks of a grpc.aio servicer context, answered as for a bench call."""

    def __init__(self, metadata: tuple[tuple[str, str], ...] = METADATA) -> None:
        self._metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def peer(self) -> str:
        return PEER

    def code(self) -> None:
        return None

    def details(self) -> None:
        return None

    def time_remaining(self) -> float:
        return 1.0


def whole_scope(
    tracer: trace.Tracer,
    roots: RootSpans | None = None,
    metadata: tuple[tuple[str, str], ...] = METADATA,
) -> Callable[[Any], None]:
    """One RPC's ``_RpcScope``, entered and left as the interceptor does (no metrics); with
    ``roots``, its server span made by them (the gateway's way for the SDK's own samplers)."""
    service, method = NAME.split("/")
    info = interceptor._Method(
        name=NAME,
        service=service,
        method=method,
        attributes=dict(METHOD_ATTRIBUTES),
        clean=dict if roots is None else roots.clean,
    )
    context = _Context(metadata)
    trace_keys = frozenset(propagate.get_global_textmap().fields)

    def call(_: Any) -> None:
        scope = interceptor._RpcScope(tracer, None, info, context, trace_keys, roots=roots)  # type: ignore[arg-type]
        with scope:
            pass

    return call


def loop_steps(n: int, reps: int) -> dict[str, float]:
    getter = interceptor._GETTER
    on = provider(True, "none").get_tracer(interceptor.TRACER_NAME)
    off = provider(False, "none").get_tracer(interceptor.TRACER_NAME)
    batch_provider = provider(True, "batch")
    batched = batch_provider.get_tracer(interceptor.TRACER_NAME)
    queue = batch_provider._active_span_processor._span_processors[0]._batch_processor._queue
    out: dict[str, float] = {}
    out["whole server span (_RpcScope enter + exit), off"] = per_call_us(
        whole_scope(off), lambda: None, n, reps
    )
    out["whole server span (_RpcScope enter + exit), sampled, batch processor"] = per_call_us(
        whole_scope(batched), lambda: _clear_every(queue, 4 * n), n, reps
    )
    roots = RootSpans.of(batched)
    out["whole server span, sampled, batch processor, made by RootSpans"] = per_call_us(
        whole_scope(batched, roots), lambda: _clear_every(queue, 4 * n), n, reps
    )
    for caller, metadata in [
        ("sampled", METADATA_SAMPLED_CALLER),
        ("not sampled", METADATA_UNSAMPLED_CALLER),
    ]:
        for way, made_by in [("start_span", None), ("RootSpans", roots)]:
            out[f"whole server span, a {caller} caller's traceparent, made by {way}"] = per_call_us(
                whole_scope(batched, made_by, metadata),
                lambda: _clear_every(queue, 4 * n),
                n,
                reps,
            )
    out["extract (a caller's traceparent)"] = per_call_us(
        lambda _: propagate.extract(METADATA_SAMPLED_CALLER, getter=getter), lambda: None, n, reps
    )
    out["extract (no traceparent; same when off)"] = per_call_us(
        lambda _: propagate.extract(METADATA, getter=getter), lambda: None, n, reps
    )
    out["start_span, off (ALWAYS_OFF: ids, non-recording span)"] = per_call_us(
        lambda _: started(off), lambda: None, n, reps
    )
    out["start_span, sampled (3 method attributes)"] = per_call_us(
        lambda _: started(on), lambda: None, n, reps
    )
    assert roots is not None
    all_attributes = roots.clean({**METHOD_ATTRIBUTES, **interceptor._peer_attributes(PEER)})
    out["RootSpans.start, sampled (3 method + 2 peer attributes, cleaned once)"] = per_call_us(
        lambda _: roots.start(NAME, roots.sampled_trace_id(NAME) or 1, all_attributes),
        lambda: None,
        n,
        reps,
    )
    out["start_span, sampled, no attributes"] = per_call_us(
        lambda _: on.start_span(NAME, context=otel_context.Context(), kind=SpanKind.SERVER),
        lambda: None,
        n,
        reps,
    )
    out["peer attributes: parse"] = per_call_us(
        lambda _: interceptor._peer_attributes(PEER), lambda: None, n, reps
    )
    peer = interceptor._peer_attributes(PEER)
    out["peer attributes: set_attributes (2)"] = per_call_us(
        lambda s: s.set_attributes(peer), lambda: started(on), n, reps
    )
    out["record_batch_stats (3 attributes)"] = per_call_us(
        lambda s: record_batch_stats(s, queue_wait_s=0.0004, batch_size=3, batch_id=1234),
        lambda: started(on),
        n,
        reps,
    )
    out["status code attribute"] = per_call_us(
        lambda s: s.set_attribute("rpc.grpc.status_code", 0), lambda: started(on), n, reps
    )
    out["is_recording checks (x3)"] = per_call_us(
        lambda s: (s.is_recording(), s.is_recording(), s.is_recording()),
        lambda: started(on),
        n,
        reps,
    )

    def attach_detach(span: Any) -> None:
        otel_context.detach(otel_context.attach(trace.set_span_in_context(span)))

    out["context attach + detach (same when off)"] = per_call_us(
        attach_detach, lambda: started(on), n, reps
    )
    out["end, no processor (ReadableSpan copy)"] = per_call_us(
        lambda s: s.end(), lambda: full_span(on), n, reps
    )

    def end_batched(span: Any) -> None:
        span.end()

    def make_batched() -> Any:
        if len(queue) > 4 * n:
            queue.clear()
        return full_span(batched)

    out["end, with BatchSpanProcessor (on_end, queue)"] = per_call_us(
        end_batched, make_batched, n, reps
    )
    out["a current-span lookup (per log line, log correlation)"] = per_call_us(
        lambda r: TraceContextFilter().filter(r), lambda: _record(), n, reps
    )
    return out


def _clear_every(queue: Any, size: int) -> None:
    if len(queue) > size:
        queue.clear()


def _record() -> Any:
    import logging

    return logging.makeLogRecord({"msg": "x"})


def real_spans(count: int) -> list[ReadableSpan]:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    p = provider(True, "none")
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    p.add_span_processor(SimpleSpanProcessor(memory))
    tracer = p.get_tracer(interceptor.TRACER_NAME)
    for i in range(count):
        span = started(tracer)
        span.set_attributes(interceptor._peer_attributes(PEER))
        record_batch_stats(span, queue_wait_s=0.0001 * i, batch_size=3, batch_id=i)
        span.set_attribute("rpc.grpc.status_code", 0)
        span.end()
    return list(memory.get_finished_spans())


def export_steps(reps: int, batch: int) -> dict[str, float]:
    spans = real_spans(batch)
    out: dict[str, float] = {}
    encoder = ExportRequestEncoder()
    out[f"wire encoder, per span (batches of {batch})"] = (
        per_call_us(lambda _: encoder.encode(spans), lambda: None, 5, reps) / batch
    )
    out[f"official encode_spans + SerializeToString, per span (batches of {batch})"] = (
        per_call_us(lambda _: encode_spans(spans).SerializeToString(), lambda: None, 3, reps)
        / batch
    )
    collector = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.discard_collector"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert collector.stdout is not None
        address = collector.stdout.readline().split()[-1]
        os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = f"http://{address}"
        os.environ["OTEL_EXPORTER_OTLP_TRACES_INSECURE"] = "true"
        exporter = WireOTLPSpanExporter()
        exporter.export(spans)  # connect
        whole = per_call_us(lambda _: exporter.export(spans), lambda: None, 5, reps)
        one = per_call_us(lambda _: exporter.export(spans[:1]), lambda: None, 50, reps)
        out[f"export() of {batch} spans (encode + gRPC call), per span"] = whole / batch
        out["export() of 1 span: the per-call cost"] = one
        exporter.shutdown()
    finally:
        collector.terminate()
        collector.wait()
    # What the processor's worker does per batch besides export: pop the queue, context.
    p = BatchSpanProcessor(
        _Null(), max_queue_size=1 << 16, schedule_delay_millis=3.6e6, max_export_batch_size=batch
    )
    bp = p._batch_processor

    def drain(_: Any) -> None:
        bp._queue.extend(spans)
        bp._export(BatchExportStrategy.EXPORT_ALL)

    out[f"processor worker: queue pop of {batch}, per span"] = (
        per_call_us(drain, lambda: None, 20, reps) / batch
    )
    p.shutdown()
    return out


def peer_attributes_ab(n: int, rounds: int) -> dict[str, float]:
    """The server span's life with the peer's attributes set after ``start_span`` (as before
    2026-11-28) and given to it, the two runs interleaved ``rounds`` times in this process so
    that a drift of the machine falls on both: the median per call of each."""
    batch_provider = provider(True, "batch")
    tracer = batch_provider.get_tracer(interceptor.TRACER_NAME)
    queue = batch_provider._active_span_processor._span_processors[0]._batch_processor._queue
    service, method = NAME.split("/")
    info = interceptor._Method(
        name=NAME, service=service, method=method, attributes=dict(METHOD_ATTRIBUTES)
    )
    getter = interceptor._GETTER

    def life(span: Any) -> None:
        token = otel_context.attach(trace.set_span_in_context(span))
        span.set_attribute("rpc.grpc.status_code", 0)
        span.end()
        otel_context.detach(token)

    def after(_: Any) -> None:
        parent = propagate.extract(METADATA, getter=getter)
        span = tracer.start_span(
            NAME, context=parent, kind=SpanKind.SERVER, attributes=info.attributes
        )
        if span.is_recording():
            span.set_attributes(interceptor._peer_attributes(PEER))
        life(span)

    def given(_: Any) -> None:
        parent = propagate.extract(METADATA, getter=getter)
        life(
            tracer.start_span(
                NAME, context=parent, kind=SpanKind.SERVER, attributes=info.span_attributes(PEER)
            )
        )

    times: dict[str, list[float]] = {"after": [], "given": []}
    for _ in range(rounds):
        for name, step in (("after", after), ("given", given)):
            times[name].append(per_call_us(step, lambda: _clear_every(queue, 4 * n), n, 1))
    return {
        "server span, peer attributes set after start (before), median": statistics.median(
            times["after"]
        ),
        "server span, peer attributes given to start_span (now), median": statistics.median(
            times["given"]
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--no-export", action="store_true")
    parser.add_argument("--ab-rounds", type=int, default=0, help="run only peer_attributes_ab")
    args = parser.parse_args()
    if args.ab_rounds:
        results = peer_attributes_ab(args.n, args.ab_rounds)
        for name, us in results.items():
            print(f"{name:<64}  {us:7.2f} µs")
        return
    results = loop_steps(args.n, args.reps)
    if not args.no_export:
        results.update(export_steps(args.reps, args.batch))
    width = max(map(len, results))
    for name, us in results.items():
        print(f"{name:<{width}}  {us:7.2f} µs")


if __name__ == "__main__":
    main()
