"""The fleet endpoint merges every worker's page, each sample labelled with its worker."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.parser import text_string_to_metric_families

from gateway.telemetry.fleet_metrics import FleetMetricsEndpoint


@pytest.fixture
def workers() -> Iterator[list[tuple[int, int]]]:
    servers = []
    sources = []
    for index, calls in enumerate((3, 5)):
        registry = CollectorRegistry()
        counter = Counter("leadgw_calls", "Calls.", ["method"], registry=registry)
        counter.labels(method="ScoreLeads").inc(calls)
        Histogram("leadgw_latency_seconds", "Latency.", registry=registry).observe(0.01 * calls)
        server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
        servers.append((server, thread))
        sources.append((index, server.server_port))
    yield sources
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def scrape(port: int) -> dict[str, list]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def test_every_workers_series_with_its_worker_label(workers) -> None:
    fleet = FleetMetricsEndpoint.start("127.0.0.1", 0, lambda: workers)
    try:
        families = scrape(fleet.port)
    finally:
        fleet.stop()
    calls = {
        s.labels["worker"]: s.value for s in families["leadgw_calls"] if s.name.endswith("_total")
    }
    assert calls == {"0": 3.0, "1": 5.0}
    counts = {
        s.labels["worker"]: s.value
        for s in families["leadgw_latency_seconds"]
        if s.name == "leadgw_latency_seconds_count"
    }
    assert counts == {"0": 1.0, "1": 1.0}
    assert all(s.labels["method"] == "ScoreLeads" for s in families["leadgw_calls"])


def test_a_silent_worker_is_left_out_and_counted(workers) -> None:
    gone = (2, workers[0][1] + 40000 if workers[0][1] < 25000 else 1)  # nothing listens there
    fleet = FleetMetricsEndpoint.start("127.0.0.1", 0, lambda: [*workers, gone])
    try:
        families = scrape(fleet.port)
    finally:
        fleet.stop()
    workers_seen = {s.labels["worker"] for s in families["leadgw_calls"]}
    assert workers_seen == {"0", "1"}
    errors = {
        s.labels["worker"]: s.value
        for s in families["leadgw_fleet_scrape_errors"]
        if s.name.endswith("_total")
    }
    assert errors == {"2": 1.0}
