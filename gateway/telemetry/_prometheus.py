"""A Prometheus scrape endpoint on its own port, over its own registry.

A dedicated ``CollectorRegistry`` (not prometheus_client's global one) lets several gateways
live in one process, as they do in tests, without duplicate-collector errors.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)


@dataclass
class PrometheusEndpoint:
    """The reader to give the meter provider, and the HTTP server that serves what it reads."""

    reader: PrometheusMetricReader
    host: str
    port: int
    _server: WSGIServer
    _thread: threading.Thread

    @classmethod
    def start(cls, host: str, port: int) -> PrometheusEndpoint:
        """Binds ``host:port`` (0 picks a free port) and serves ``/metrics`` on a daemon thread."""
        registry = CollectorRegistry()
        # The process's own health beside leadgw's series: CPU, memory, open files
        # (process_*), collections (python_gc_*) and the interpreter (python_info).
        ProcessCollector(registry=registry)
        GCCollector(registry=registry)
        PlatformCollector(registry=registry)
        reader = PrometheusMetricReader(registry=registry)
        server, thread = start_http_server(port, addr=host, registry=registry)
        return cls(reader, host, server.server_port, server, thread)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
