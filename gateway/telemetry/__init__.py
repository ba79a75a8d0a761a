"""OpenTelemetry for leadgw: providers from ``OTEL_*``, the server interceptor, metrics, logs.

Nothing is created at import; ``Telemetry.configure`` does it once at start-up.
"""

from gateway.telemetry.interceptor import (
    UNTRACED_SERVICES,
    server_handler_wrapper,
    server_interceptor,
)
from gateway.telemetry.logs import configure_logging
from gateway.telemetry.metrics import BreakerState, Metrics
from gateway.telemetry.setup import Telemetry
from runtimes.tracing import batch_span, current_span_context, record_batch_stats

__all__ = [
    "UNTRACED_SERVICES",
    "BreakerState",
    "Metrics",
    "Telemetry",
    "batch_span",
    "configure_logging",
    "current_span_context",
    "record_batch_stats",
    "server_handler_wrapper",
    "server_interceptor",
]
