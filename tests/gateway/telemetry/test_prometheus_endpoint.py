"""The Prometheus scrape endpoint: on loopback, on its own port and registry, every metric."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from gateway.telemetry import BreakerState, Telemetry


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


@pytest.fixture
def telemetry(clean_otel_env: pytest.MonkeyPatch) -> Iterator[Telemetry]:
    telemetry = Telemetry.configure(metrics_port=0, set_global=False)
    yield telemetry
    telemetry.shutdown()


def test_endpoint_serves_every_leadgw_metric(telemetry: Telemetry) -> None:
    metrics = telemetry.metrics
    metrics.record_rpc("leadgw.v1.LeadService", "ScoreLeads", 0, 0.0004)
    metrics.record_batch("lead_scorer", "1", rows=8, exec_s=0.0002)
    metrics.record_queue_wait("lead_scorer", "1", wait_s=0.0001)
    metrics.record_llm_tokens(input_tokens=120, output_tokens=40)
    metrics.record_llm_error("timeout")
    metrics.record_summary_cache(hit=True)
    metrics.record_summary_cache(hit=False)
    metrics.observe_queue_depth("lead_scorer", lambda: 3, version="1")
    metrics.observe_breaker_state("127.0.0.1:8080", lambda: BreakerState.OPEN)

    assert telemetry.metrics_port
    body = scrape(telemetry.metrics_port)

    for line in (
        'rpc_server_duration_milliseconds_bucket{le="0.5"',  # sub-millisecond buckets
        "rpc_server_duration_milliseconds_count{",  # the request counter
        "leadgw_batch_size_bucket{",
        "leadgw_model_execution_duration_milliseconds_count{",
        "leadgw_batcher_queue_wait_milliseconds_count{",
        'leadgw_batcher_queue_depth{model="lead_scorer"',
        'leadgw_llm_tokens_total{otel_scope_name="leadgw"',
        "leadgw_llm_errors_total{",
        "leadgw_summary_cache_hits_total{",
        "leadgw_summary_cache_misses_total{",
        'leadgw_llm_breaker_state{endpoint="127.0.0.1:8080"',
    ):
        assert line in body, line
    assert 'rpc_method="ScoreLeads"' in body
    assert 'type="output"' in body


def test_endpoint_binds_loopback_only(telemetry: Telemetry) -> None:
    assert telemetry.prometheus is not None
    assert telemetry.prometheus.host == "127.0.0.1"


def test_two_endpoints_in_one_process_keep_their_own_numbers(telemetry: Telemetry) -> None:
    other = Telemetry.configure(metrics_port=0, set_global=False)
    try:
        telemetry.metrics.record_llm_error("only-in-the-first")
        assert other.metrics_port not in (None, telemetry.metrics_port)
        assert "only-in-the-first" in scrape(telemetry.metrics_port or 0)
        assert "only-in-the-first" not in scrape(other.metrics_port or 0)
    finally:
        other.shutdown()


def test_shutdown_closes_the_port(clean_otel_env: pytest.MonkeyPatch) -> None:
    telemetry = Telemetry.configure(metrics_port=0, set_global=False)
    port = telemetry.metrics_port or 0
    telemetry.shutdown()
    with pytest.raises(urllib.error.URLError):
        scrape(port)


def test_force_flush_does_not_duplicate_families_at_the_next_scrape(telemetry: Telemetry) -> None:
    telemetry.metrics.record_llm_error("timeout")
    telemetry.force_flush()

    body = scrape(telemetry.metrics_port or 0)
    assert body.count("# TYPE leadgw_llm_errors_total counter") == 1
