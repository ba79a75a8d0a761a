"""configure_logging: JSON lines and text, stamped with the current trace and span ids."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import grpc
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from opentelemetry.trace import Tracer

from gateway.telemetry import Telemetry, configure_logging, server_interceptor
from tests.gateway.telemetry.telemetry_helpers import start_echo_server

log = logging.getLogger("leadgw.test")


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
def tracer() -> Tracer:
    """A private provider: these tests need valid span ids, not exported spans."""
    return TracerProvider().get_tracer("leadgw.test")


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_trace_and_span_ids_inside_a_span(tracer: Tracer) -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)

    log.info("outside")
    with tracer.start_as_current_span("scoring") as span:
        log.warning("scored %d leads", 3, extra={"model": "lead_scorer"})
    ids = span.get_span_context()

    outside, inside = lines(stream)
    assert outside["message"] == "outside"
    assert "trace_id" not in outside and "span_id" not in outside
    assert inside["trace_id"] == format(ids.trace_id, "032x")
    assert inside["span_id"] == format(ids.span_id, "016x")
    assert inside["message"] == "scored 3 leads"
    assert inside["level"] == "WARNING"
    assert inside["logger"] == "leadgw.test"
    assert inside["model"] == "lead_scorer"
    assert str(inside["timestamp"]).endswith("Z")


def test_json_exception_is_one_line_with_the_traceback(tracer: Tracer) -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    try:
        raise ValueError("bad lead")
    except ValueError:
        log.exception("scoring failed")

    (line,) = lines(stream)
    assert "ValueError: bad lead" in str(line["exception"])


def test_text_format_shows_ids_for_humans(tracer: Tracer) -> None:
    stream = io.StringIO()
    configure_logging("DEBUG", "text", stream=stream)
    with tracer.start_as_current_span("s") as span:
        log.debug("hello")

    text = stream.getvalue()
    assert "DEBUG" in text and "leadgw.test: hello" in text
    assert f"trace_id={span.get_span_context().trace_id:032x}" in text


def test_level_filters_and_a_second_call_replaces_the_first() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("INFO", "json", stream=first)
    configure_logging("WARNING", "json", stream=second)

    log.info("dropped")
    log.warning("kept")

    assert first.getvalue() == ""
    assert [line["message"] for line in lines(second)] == ["kept"]


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="json"):
        configure_logging("INFO", "yaml")  # type: ignore[arg-type]


@pytest.mark.parametrize("tracing", ["off", "sampled out"])
async def test_unrecorded_calls_carry_ids_to_the_logs_only_from_their_callers_trace_context(
    clean_otel_env: pytest.MonkeyPatch, tracing: str
) -> None:
    """Tracing off (no exporter configured), or a sampler that drops the call: nothing is
    recorded. A call without trace context then runs with no span current (its lines carry no
    ids, as outside a request: before, a random id nobody recorded); a caller's trace id still
    reaches the logs, through the same server."""
    telemetry = Telemetry.configure(set_global=False)
    provider = (
        telemetry.tracer_provider
        if tracing == "off"
        else TracerProvider(sampler=TraceIdRatioBased(0.0))  # asked, and says no
    )
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    server, port = await start_echo_server(server_interceptor(tracer_provider=provider))
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            say = channel.unary_unary("/test.v1.Echo/Say")
            await say(b"log", metadata=(("x-other", "1"),))
            await say(b"log", metadata=(("traceparent", f"00-{trace_id}-00f067aa0ba902b7-01"),))
    finally:
        await server.stop(None)
        telemetry.shutdown()

    without, with_parent = [
        line for line in lines(stream) if line["message"] == "inside the handler"
    ]
    assert "trace_id" not in without and "span_id" not in without
    assert with_parent["trace_id"] == trace_id


# Edges of the millisecond and of the second: rounding to the microsecond carries into the next
# second; half a microsecond rounds to even; before 1970 the fraction is negative.
TIMESTAMP_EDGES = [0.0, 1.9999996, 1.9999994, 1.0005, 1.0004995, 1764424410.9999995,
                   1764424410.0009995, 4102444799.9999999, -0.5, -1.0000004, 1e9 + 0.5]  # fmt: skip


def test_json_timestamps_are_those_datetime_writes() -> None:
    """The formatter keeps the date and time to the second between lines; every line's stamp
    must still be exactly what datetime's isoformat gives, in any order of seconds."""
    import random
    from datetime import UTC, datetime

    from gateway.telemetry.logs import JsonFormatter

    formatter = JsonFormatter()
    rng = random.Random(7)
    created = TIMESTAMP_EDGES + [rng.uniform(0, 4e9) for _ in range(5000)]
    created += [1764424410 + i / 7 for i in range(50)]  # several lines in each second
    for stamp in created:
        iso = datetime.fromtimestamp(stamp, UTC).isoformat(timespec="milliseconds")
        expected = iso.replace("+00:00", "Z")
        assert formatter.timestamp(stamp) == expected, stamp


def test_json_line_stamp_follows_the_records_time() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream)
    record = log.makeRecord("leadgw.test", logging.INFO, __file__, 1, "at %s", ("noon",), None)
    record.created = 1764417600.25  # 2025-11-29T12:00:00.250Z
    log.handle(record)
    record.created = 1764417601.0
    log.handle(record)
    stamps = [line["timestamp"] for line in lines(stream)]
    assert stamps == ["2025-11-29T12:00:00.250Z", "2025-11-29T12:00:01.000Z"]
