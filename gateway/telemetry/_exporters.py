"""Span exporters and metric readers chosen by the standard ``OTEL_*`` environment variables.

Exporter modules are imported only when selected, so an unconfigured gateway loads neither the
OTLP/gRPC nor the OTLP/HTTP client.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter

log = logging.getLogger(__name__)

# "prometheus" is served by the gateway's own endpoint (settings), not by a reader made here.
KNOWN = frozenset({"otlp", "console", "prometheus", "none"})
PROTOCOLS = ("grpc", "http/protobuf")


def disabled(environ: Mapping[str, str] = os.environ) -> bool:
    """``OTEL_SDK_DISABLED=true`` turns every exporter off."""
    return environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def selected(variable: str, environ: Mapping[str, str] = os.environ) -> list[str]:
    """The exporter names in ``variable`` (comma-separated); unset or ``none`` means none."""
    names = [n.strip().lower() for n in environ.get(variable, "none").split(",") if n.strip()]
    unknown = sorted(set(names) - KNOWN)
    if unknown:
        raise ValueError(
            f"{variable}: unsupported exporter(s) {unknown}; use otlp, console, prometheus, none"
        )
    if "none" in names or disabled(environ):
        return []
    return list(dict.fromkeys(names))  # de-duplicated, order kept


def otlp_protocol(signal: str, environ: Mapping[str, str] = os.environ) -> str:
    """The OTLP protocol for ``signal`` (TRACES or METRICS); grpc unless set otherwise."""
    protocol = (
        environ.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "grpc"
    ).strip()
    if protocol not in PROTOCOLS:
        raise ValueError(f"OTLP protocol {protocol!r} is not supported; use one of {PROTOCOLS}")
    return protocol


def span_exporters_from_env() -> list[SpanExporter]:
    """Exporters named by ``OTEL_TRACES_EXPORTER``; endpoints, headers and timeouts are read
    from ``OTEL_EXPORTER_OTLP_*`` by the exporters themselves.

    OTLP/gRPC uses ``WireOTLPSpanExporter``: the official exporter, but writing the request
    bytes itself, far faster. OTLP/HTTP stays on the official exporter and its encoder."""
    exporters: list[SpanExporter] = []
    for name in selected("OTEL_TRACES_EXPORTER"):
        if name == "prometheus":
            raise ValueError("OTEL_TRACES_EXPORTER: prometheus exports metrics, not traces")
        if name == "console":
            # sys.stdout as it is now: the SDK's default is bound when it is imported.
            exporters.append(ConsoleSpanExporter(out=sys.stdout))
        elif otlp_protocol("TRACES") == "grpc":
            exporters.append(otlp_grpc_span_exporter())
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter as HTTPSpanExporter,
            )

            exporters.append(HTTPSpanExporter())
    return exporters


def otlp_grpc_span_exporter(encoder: object | None = None) -> SpanExporter:
    """The fast wire exporter when its start-up self-check passes, else the official one.

    ``encoder`` replaces the fast encoder in the self-check (tests use it to play a library
    change that the fast path no longer matches)."""
    from gateway.telemetry import _otlp_wire

    why = _otlp_wire.disagreement(encoder)  # type: ignore[arg-type]
    if why is None:
        return _otlp_wire.WireOTLPSpanExporter()
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    log.warning("OTLP/gRPC: using the official span encoder, not the fast one: %s", why)
    return OTLPSpanExporter()


def metric_readers_from_env() -> list[MetricReader]:
    """Periodic readers for the exporters named by ``OTEL_METRICS_EXPORTER`` (interval from
    ``OTEL_METRIC_EXPORT_INTERVAL``)."""
    readers: list[MetricReader] = []
    for name in selected("OTEL_METRICS_EXPORTER"):
        exporter: MetricExporter
        if name == "prometheus":
            continue  # the gateway's own endpoint (Settings.metrics_port) serves it
        if name == "console":
            exporter = ConsoleMetricExporter(out=sys.stdout)
        elif otlp_protocol("METRICS") == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

            exporter = OTLPMetricExporter()
        else:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter as HTTPMetricExporter,
            )

            exporter = HTTPMetricExporter()
        readers.append(PeriodicExportingMetricReader(exporter))
    return readers
