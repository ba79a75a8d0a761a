"""One Prometheus endpoint for the whole gateway: the supervisor's, carrying every worker's series.

Each worker serves its own metrics on a loopback port the supervisor alone knows. A scrape of
the fleet endpoint reads every worker's page, adds a ``worker`` label to each sample, and serves
the families merged, so a scraper in the cluster sees one target per pod, with every worker's
series. A worker that does not answer in time is left out of that scrape and counted in
``leadgw_fleet_scrape_errors_total``; the endpoint itself never fails a scrape for it.
"""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from urllib.error import URLError
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

WORKER_LABEL = "worker"
SCRAPE_TIMEOUT_S = 2.0


class FleetCollector(Collector):
    """Collects by scraping ``sources()``: (worker index, loopback metrics port) pairs."""

    def __init__(self, sources: Callable[[], Sequence[tuple[int, int]]]) -> None:
        self._sources = sources
        self._errors: dict[str, int] = {}
        self._lock = threading.Lock()  # scrapes may overlap

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for index, port in self._sources():
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/metrics", timeout=SCRAPE_TIMEOUT_S
                ) as response:
                    text = response.read().decode()
            except (URLError, OSError, TimeoutError):
                with self._lock:
                    self._errors[str(index)] = self._errors.get(str(index), 0) + 1
                continue
            for family in text_string_to_metric_families(text):
                into = merged.get(family.name)
                if into is None:
                    into = merged[family.name] = Metric(
                        family.name, family.documentation, family.type, family.unit
                    )
                for sample in family.samples:
                    labels = {**sample.labels, WORKER_LABEL: str(index)}
                    into.samples.append(sample._replace(labels=labels))
        yield from merged.values()
        # Last, so that this scrape's failures are in it.
        errors = CounterMetricFamily(
            "leadgw_fleet_scrape_errors",
            "Worker metrics pages the fleet endpoint could not read, by worker.",
            labels=[WORKER_LABEL],
        )
        with self._lock:
            for worker, count in sorted(self._errors.items()):
                errors.add_metric([worker], count)
        yield errors


@dataclass
class FleetMetricsEndpoint:
    host: str
    port: int
    _server: WSGIServer
    _thread: threading.Thread

    @classmethod
    def start(
        cls, host: str, port: int, sources: Callable[[], Sequence[tuple[int, int]]]
    ) -> FleetMetricsEndpoint:
        registry = CollectorRegistry()
        registry.register(FleetCollector(sources))
        server, thread = start_http_server(port, addr=host, registry=registry)
        return cls(host, server.server_port, server, thread)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
