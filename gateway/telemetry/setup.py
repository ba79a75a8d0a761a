"""Builds the process's tracer and meter providers from the standard ``OTEL_*`` variables.

With nothing configured, spans are never sampled (cheap non-recording spans that still carry a
caller's trace id into the logs) and metrics go only where ``metrics_port`` says; with no
metrics port and no metrics exporter, the instruments are no-ops.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from gateway.telemetry import _exporters
from gateway.telemetry._prometheus import PrometheusEndpoint
from gateway.telemetry.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass
class Telemetry:
    """The configured providers, the ``Metrics`` built on them, and the Prometheus endpoint."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    metrics: Metrics
    tracing: bool
    """Whether any span exporter is configured (otherwise nothing is sampled)."""
    is_global: bool
    prometheus: PrometheusEndpoint | None = None
    push_readers: Sequence[MetricReader] = ()
    """The readers that export on their own schedule (OTLP, console, injected ones)."""
    _stopped: bool = field(default=False, repr=False)

    @classmethod
    def configure(
        cls,
        service_name_default: str = "leadgw",
        metrics_port: int | None = None,
        *,
        metrics_host: str = "127.0.0.1",
        span_exporters: Sequence[SpanExporter] = (),
        metric_readers: Sequence[MetricReader] = (),
        set_global: bool = True,
    ) -> Telemetry:
        """Reads ``OTEL_*``, adds the given exporters and readers, and (by default) installs the
        providers as the process's global ones, which can happen once per process.

        Raises ``ValueError`` for an unsupported exporter or protocol and ``RuntimeError`` when
        ``set_global`` is asked for twice.
        """
        if set_global and not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            raise RuntimeError(
                "the global tracer provider is already set in this process; "
                "configure telemetry once at start-up (or pass set_global=False)"
            )
        # Bind the port before any exporter thread starts, so a busy port leaks nothing.
        prometheus = None
        if metrics_port is not None:
            prometheus = PrometheusEndpoint.start(metrics_host, metrics_port)
        try:
            exporters = [*_exporters.span_exporters_from_env(), *span_exporters]
            readers = [*_exporters.metric_readers_from_env(), *metric_readers]
        except Exception:
            if prometheus is not None:
                prometheus.stop()
            raise

        resource = _resource(service_name_default)
        # sampler=None: the SDK reads OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG itself.
        sampler = None if exporters else ALWAYS_OFF
        tracer_provider = TracerProvider(resource=resource, sampler=sampler)
        for exporter in exporters:
            tracer_provider.add_span_processor(span_processor(exporter))
        all_readers = readers if prometheus is None else [*readers, prometheus.reader]
        meter_provider = MeterProvider(resource=resource, metric_readers=all_readers)

        if set_global:
            trace.set_tracer_provider(tracer_provider)
            metrics.set_meter_provider(meter_provider)
        if prometheus is not None:
            log.info("prometheus metrics on http://%s:%d/metrics", prometheus.host, prometheus.port)
        return cls(
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            # No reader: nothing can ever read a measurement (leadgw adds none later), so no
            # measurement is taken at all (the interceptor and batchers skip recording).
            metrics=Metrics.from_provider(meter_provider) if all_readers else Metrics.noop(),
            tracing=bool(exporters),
            is_global=set_global,
            prometheus=prometheus,
            push_readers=tuple(readers),
        )

    @property
    def metrics_port(self) -> int | None:
        """The port the Prometheus endpoint is bound to, or None without one."""
        return None if self.prometheus is None else self.prometheus.port

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Exports every finished span and the current metrics now."""
        flushed = self.tracer_provider.force_flush(timeout_millis)
        # Not meter_provider.force_flush(): a collection pushed into the Prometheus reader is
        # queued and served again at the next scrape, duplicating every metric family.
        for reader in self.push_readers:
            flushed = reader.force_flush(timeout_millis) and flushed
        return flushed

    def shutdown(self) -> None:
        """Flushes and stops exporters and the Prometheus endpoint. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()
        if self.prometheus is not None:
            self.prometheus.stop()


def span_processor(exporter: SpanExporter) -> BatchSpanProcessor:
    """The processor each span exporter gets: the SDK's batch span processor with its defaults
    (``OTEL_BSP_*`` change them). Larger batches would not pay: an export call costs ~0.3 ms
    of CPU, under 1 µs a span at the default 512 (docs/perf/2026-11-28-trace100.md)."""
    return BatchSpanProcessor(exporter)


def _resource(service_name_default: str) -> Resource:
    detected = dict(Resource.create().attributes)
    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES (read by Resource.create) win over ours.
    if str(detected.get("service.name", "")).startswith("unknown_service"):
        del detected["service.name"]
    defaults: dict[str, str] = {
        "service.name": service_name_default,
        "service.instance.id": str(uuid.uuid4()),
    }
    with suppress(PackageNotFoundError):  # a source tree that is not installed has no version
        defaults["service.version"] = version("leadgw")
    return Resource({**defaults, **detected})
