"""Telemetry.configure: exporters, sampler and resource from the OTEL_* variables."""

from __future__ import annotations

import json

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    TraceFlags,
    set_span_in_context,
)

from gateway.telemetry import Telemetry

REMOTE_SAMPLED_PARENT = set_span_in_context(
    NonRecordingSpan(
        SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    )
)


def configure(**kwargs: object) -> Telemetry:
    return Telemetry.configure(set_global=False, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OTEL_TRACES_EXPORTER", "zipkin"),
        ("OTEL_METRICS_EXPORTER", "otlp,statsd"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
    ],
)
def test_unsupported_settings_are_refused(
    clean_otel_env: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    clean_otel_env.setenv("OTEL_TRACES_EXPORTER", "otlp")
    clean_otel_env.setenv("OTEL_METRICS_EXPORTER", "none")
    clean_otel_env.setenv(variable, value)
    with pytest.raises(ValueError, match="supported"):
        configure()


def test_nothing_configured_samples_nothing_but_keeps_the_callers_trace_id(
    clean_otel_env: pytest.MonkeyPatch,
) -> None:
    telemetry = configure()
    try:
        assert not telemetry.tracing
        assert telemetry.metrics_port is None
        span = telemetry.tracer_provider.get_tracer("t").start_span(
            "s", context=REMOTE_SAMPLED_PARENT
        )
        assert not span.is_recording()
        assert span.get_span_context().trace_id == 0x1234  # so logs still correlate
        # Nothing could read a measurement: the instruments are no-ops (no per-call SDK work).
        assert not telemetry.metrics.recording
    finally:
        telemetry.shutdown()


def test_a_metrics_endpoint_gets_recording_instruments(clean_otel_env: pytest.MonkeyPatch) -> None:
    telemetry = configure(metrics_port=0)
    try:
        assert telemetry.metrics.recording
    finally:
        telemetry.shutdown()


def test_a_metrics_exporter_gets_recording_instruments(clean_otel_env: pytest.MonkeyPatch) -> None:
    clean_otel_env.setenv("OTEL_METRICS_EXPORTER", "console")
    telemetry = configure()
    try:
        assert telemetry.push_readers
        assert telemetry.metrics.recording
    finally:
        telemetry.shutdown()


@pytest.mark.parametrize(
    ("sampler", "arg", "root_recorded", "child_of_sampled_recorded"),
    [
        (None, None, True, True),  # parentbased_always_on, the SDK default
        ("always_off", None, False, False),
        ("traceidratio", "0", False, False),
        ("traceidratio", "1", True, True),
        ("parentbased_traceidratio", "0", False, True),
        ("parentbased_traceidratio", "1", True, True),
    ],
)
def test_sampler_comes_from_the_environment(
    clean_otel_env: pytest.MonkeyPatch,
    sampler: str | None,
    arg: str | None,
    root_recorded: bool,
    child_of_sampled_recorded: bool,
) -> None:
    if sampler is not None:
        clean_otel_env.setenv("OTEL_TRACES_SAMPLER", sampler)
    if arg is not None:
        clean_otel_env.setenv("OTEL_TRACES_SAMPLER_ARG", arg)
    telemetry = configure(span_exporters=[InMemorySpanExporter()])
    try:
        tracer = telemetry.tracer_provider.get_tracer("t")
        assert tracer.start_span("root").is_recording() is root_recorded
        child = tracer.start_span("child", context=REMOTE_SAMPLED_PARENT)
        assert child.is_recording() is child_of_sampled_recorded
    finally:
        telemetry.shutdown()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "leadgw"),
        ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attributes"}, "from-attributes"),
        (
            {"OTEL_SERVICE_NAME": "from-name", "OTEL_RESOURCE_ATTRIBUTES": "service.name=x"},
            "from-name",
        ),
    ],
)
def test_service_name(
    clean_otel_env: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    for key, value in env.items():
        clean_otel_env.setenv(key, value)
    exporter = InMemorySpanExporter()
    telemetry = configure(span_exporters=[exporter])
    telemetry.tracer_provider.get_tracer("t").start_span("s").end()
    telemetry.shutdown()

    (span,) = exporter.get_finished_spans()
    assert span.resource.attributes["service.name"] == expected
    assert span.resource.attributes["service.instance.id"]


def test_console_exporter_prints_spans(
    clean_otel_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_otel_env.setenv("OTEL_TRACES_EXPORTER", "console")
    telemetry = configure()
    telemetry.tracer_provider.get_tracer("t").start_span("shown on stdout").end()
    telemetry.shutdown()

    printed = json.loads(capsys.readouterr().out)
    assert printed["name"] == "shown on stdout"


def test_global_providers_are_set_once(global_telemetry: object) -> None:
    with pytest.raises(RuntimeError, match="already set"):
        Telemetry.configure()


def test_shutdown_twice_is_harmless(clean_otel_env: pytest.MonkeyPatch) -> None:
    telemetry = configure(metrics_port=0)
    telemetry.shutdown()
    telemetry.shutdown()
