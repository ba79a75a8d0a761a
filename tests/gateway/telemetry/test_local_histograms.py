"""The per-request histograms aggregated in leadgw's own code (gateway.telemetry.local_histograms)
give every reader what the SDK's own histograms would, and are used only where that is exact."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    InMemoryMetricReader,
    MetricsData,
)

from gateway.telemetry import Metrics
from gateway.telemetry.metrics import LATENCY_BUCKETS_MS, METER_NAME

# Durations in seconds: zero, exactly on bucket bounds (0.05 ms, 1 ms, 10 ms), between bounds,
# past the last bound, and negative (dropped by both, as OpenTelemetry histograms take none).
DURATIONS_S = (0.0, 0.00005, 0.001, 0.0012, 0.010, 0.0101, 45.0, 0.0003, -0.002, 0.001)
ROWS = (1, 1, 2, 3, 1024, 1025, 20000, 7)


def record_everything(metrics: Metrics) -> None:
    for i, duration in enumerate(DURATIONS_S):
        code = 0 if i % 3 else 3
        metrics.record_rpc("inference.GRPCInferenceService", "ModelInfer", code, duration)
        metrics.record_rpc("leadgw.v1.LeadService", "ScoreLeads", 0, duration / 2)
        metrics.record_queue_wait("lead_scorer", "1" if i % 2 else "2", duration)
    for rows, duration in zip(ROWS, DURATIONS_S, strict=False):
        metrics.record_batch("lead_scorer", "1", rows, duration)


def histogram_points(data: MetricsData | None) -> dict[str, dict[tuple, tuple]]:
    """metric name -> attributes -> everything a histogram point says but its timestamps."""
    found: dict[str, dict[tuple, tuple]] = {}
    for resource_metrics in data.resource_metrics if data else ():
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                if not hasattr(metric.data, "aggregation_temporality"):
                    continue
                series = found.setdefault(metric.name, {})
                for point in metric.data.data_points:
                    key = tuple(sorted(point.attributes.items()))
                    assert key not in series, f"{metric.name}: {key} twice"
                    series[key] = (
                        metric.unit,
                        metric.description,
                        metric.data.aggregation_temporality,
                        point.count,
                        pytest.approx(point.sum),
                        tuple(point.bucket_counts),
                        tuple(point.explicit_bounds),
                        point.min,
                        point.max,
                    )
    return found


@pytest.fixture
def two_providers() -> Iterator[
    tuple[InMemoryMetricReader, InMemoryMetricReader, Metrics, Metrics]
]:
    local_reader, sdk_reader = InMemoryMetricReader(), InMemoryMetricReader()
    local_provider = MeterProvider(metric_readers=[local_reader])
    sdk_provider = MeterProvider(metric_readers=[sdk_reader])
    local = Metrics.from_provider(local_provider)
    # Built directly on a meter, Metrics uses the SDK's own instruments.
    sdk = Metrics(sdk_provider.get_meter(METER_NAME))
    yield local_reader, sdk_reader, local, sdk
    local_provider.shutdown()
    sdk_provider.shutdown()


def test_the_local_histograms_are_used_on_the_installed_sdk(two_providers) -> None:
    """Fails (rather than every request silently costing ~25 µs more) if an SDK upgrade removes
    the reader hook the local histograms need."""
    _, _, local, sdk = two_providers
    assert local._local is not None
    assert sdk._local is None


def test_readers_see_exactly_what_the_sdk_histograms_give(two_providers) -> None:
    local_reader, sdk_reader, local, sdk = two_providers
    record_everything(local)
    record_everything(sdk)
    ours, theirs = (
        histogram_points(local_reader.get_metrics_data()),
        histogram_points(sdk_reader.get_metrics_data()),
    )
    assert set(ours) == {
        "rpc.server.duration",
        "leadgw.batcher.queue_wait",
        "leadgw.batch.size",
        "leadgw.model.execution.duration",
    }
    assert ours == theirs
    # Collected again after more records: cumulative, as the SDK's.
    local.record_rpc("leadgw.v1.LeadService", "ScoreLeads", 0, 0.002)
    sdk.record_rpc("leadgw.v1.LeadService", "ScoreLeads", 0, 0.002)
    again = histogram_points(local_reader.get_metrics_data())
    assert again == histogram_points(sdk_reader.get_metrics_data())
    score_leads = again["rpc.server.duration"][
        tuple(sorted({"rpc.system": "grpc", "rpc.service": "leadgw.v1.LeadService",
                      "rpc.method": "ScoreLeads", "rpc.grpc.status_code": 0}.items()))
    ]  # fmt: skip
    assert score_leads[3] == len([d for d in DURATIONS_S if d >= 0]) + 1
    assert score_leads[6] == tuple(float(b) for b in LATENCY_BUCKETS_MS)


def test_local_histograms_share_the_scope_of_the_sdk_instruments(two_providers) -> None:
    local_reader, _, local, _ = two_providers
    local.record_rpc("leadgw.v1.LeadService", "ScoreLeads", 0, 0.001)
    local.record_summary_cache(hit=True)  # an SDK counter in the same meter
    data = local_reader.get_metrics_data()
    assert data is not None
    ((resource_metrics,),) = [data.resource_metrics]
    scopes = [s.scope.name for s in resource_metrics.scope_metrics]
    assert scopes == [METER_NAME]
    names = {m.name for m in resource_metrics.scope_metrics[0].metrics}
    assert {"rpc.server.duration", "leadgw.summary.cache.hits"} <= names


def test_only_local_histograms_recorded_still_reach_the_reader() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        metrics = Metrics.from_provider(provider)
        assert reader.get_metrics_data() is None or not histogram_points(reader.get_metrics_data())
        metrics.record_queue_wait("lead_scorer", "1", 0.0)
        points = histogram_points(reader.get_metrics_data())
        assert (
            points["leadgw.batcher.queue_wait"][(("model", "lead_scorer"), ("version", "1"))][3]
            == 1
        )
    finally:
        provider.shutdown()


def test_two_metrics_on_one_provider_share_their_series() -> None:
    """As two meters asking the SDK for one instrument name get one instrument."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        first, second = Metrics.from_provider(provider), Metrics.from_provider(provider)
        first.record_rpc("s.S", "M", 0, 0.001)
        second.record_rpc("s.S", "M", 0, 0.003)
        ((_, point),) = histogram_points(reader.get_metrics_data())["rpc.server.duration"].items()
        assert point[3] == 2
        assert point[4] == pytest.approx(4.0)
    finally:
        provider.shutdown()


def test_a_reader_taking_histograms_as_deltas_gets_the_sdk_instruments(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reader = InMemoryMetricReader(preferred_temporality={Histogram: AggregationTemporality.DELTA})
    provider = MeterProvider(metric_readers=[reader])
    try:
        with caplog.at_level(logging.INFO, logger="gateway.telemetry.local_histograms"):
            metrics = Metrics.from_provider(provider)
        assert metrics._local is None
        assert "takes histograms as deltas" in caplog.text
        metrics.record_rpc("s.S", "M", 0, 0.001)
        ((_, first),) = histogram_points(reader.get_metrics_data())["rpc.server.duration"].items()
        metrics.record_rpc("s.S", "M", 0, 0.001)
        ((_, second),) = histogram_points(reader.get_metrics_data())["rpc.server.duration"].items()
        assert first[2] is second[2] is AggregationTemporality.DELTA
        assert first[3] == second[3] == 1
    finally:
        provider.shutdown()


def test_every_reader_of_a_provider_sees_the_local_histograms() -> None:
    readers = [InMemoryMetricReader(), InMemoryMetricReader()]
    provider = MeterProvider(metric_readers=readers)
    try:
        Metrics.from_provider(provider).record_batch("lead_scorer", "1", 4, 0.001)
        for reader in readers:
            sizes = histogram_points(reader.get_metrics_data())["leadgw.batch.size"]
            assert [point[3] for point in sizes.values()] == [1]
    finally:
        provider.shutdown()


def test_records_from_several_threads_are_all_counted() -> None:
    """The batcher's executor threads record batches while the loop records RPCs and the
    exporter's thread collects."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        metrics = Metrics.from_provider(provider)
        per_thread, threads = 5000, 4

        def record() -> None:
            for _ in range(per_thread):
                metrics.record_batch("lead_scorer", "1", 1, 0.0001)

        workers = [threading.Thread(target=record) for _ in range(threads)]
        for worker in workers:
            worker.start()
        while any(worker.is_alive() for worker in workers):
            reader.get_metrics_data()  # collections while records go on
        for worker in workers:
            worker.join()
        sizes = histogram_points(reader.get_metrics_data())["leadgw.batch.size"]
        ((_, point),) = sizes.items()
        assert point[3] == per_thread * threads
        assert point[5][0] == per_thread * threads  # every row count of 1 in the first bucket
        assert point[4] == pytest.approx(per_thread * threads)
    finally:
        provider.shutdown()
