"""The Metrics holder: what components record, and registrable gauge callbacks."""

from __future__ import annotations

import pytest

from gateway.telemetry import BreakerState, Metrics
from tests.gateway.telemetry.telemetry_helpers import MetricRecorder


def values(recorder: MetricRecorder, name: str) -> dict[tuple[tuple[str, object], ...], object]:
    return {
        tuple(sorted(attributes.items())): point.value  # type: ignore[attr-defined]
        for attributes, point in recorder.points(name)
    }


def test_queue_depth_sources_are_read_at_collection_and_can_leave(
    metric_recorder: MetricRecorder,
) -> None:
    depth = {"v1": 4}
    unregister_v1 = metric_recorder.metrics.observe_queue_depth(
        "lead_scorer", lambda: depth["v1"], version="1"
    )
    metric_recorder.metrics.observe_queue_depth("lead_scorer", lambda: 0, version="2")
    depth["v1"] = 9  # the value at collection time counts, not at registration

    assert values(metric_recorder, "leadgw.batcher.queue_depth") == {
        (("model", "lead_scorer"), ("version", "1")): 9,
        (("model", "lead_scorer"), ("version", "2")): 0,
    }

    unregister_v1()  # version 1 unloaded after a hot swap
    assert values(metric_recorder, "leadgw.batcher.queue_depth") == {
        (("model", "lead_scorer"), ("version", "2")): 0,
    }


def test_a_failing_source_does_not_hide_the_others(metric_recorder: MetricRecorder) -> None:
    def broken() -> int:
        raise RuntimeError("breaker gone")

    metric_recorder.metrics.observe_breaker_state("a:1", broken)
    metric_recorder.metrics.observe_breaker_state("b:2", lambda: BreakerState.HALF_OPEN)

    assert values(metric_recorder, "leadgw.llm.breaker.state") == {(("endpoint", "b:2"),): 1}


def test_cache_and_token_counters(metric_recorder: MetricRecorder) -> None:
    metrics = metric_recorder.metrics
    for hit in (True, True, False):
        metrics.record_summary_cache(hit)
    metrics.record_llm_tokens(input_tokens=100, output_tokens=0)
    metrics.record_llm_tokens(input_tokens=50, output_tokens=25)

    assert values(metric_recorder, "leadgw.summary.cache.hits") == {(): 2}
    assert values(metric_recorder, "leadgw.summary.cache.misses") == {(): 1}
    assert values(metric_recorder, "leadgw.llm.tokens") == {
        (("type", "input"),): 150,
        (("type", "output"),): 25,
    }


def test_batch_records_rows_and_execution_time(metric_recorder: MetricRecorder) -> None:
    metric_recorder.metrics.record_batch("lead_scorer", "3", rows=16, exec_s=0.0015)

    ((attributes, size),) = metric_recorder.points("leadgw.batch.size")
    ((_, execution),) = metric_recorder.points("leadgw.model.execution.duration")
    assert attributes == {"model": "lead_scorer", "version": "3"}
    assert (size.sum, size.count) == (16, 1)  # type: ignore[attr-defined]
    assert execution.sum == pytest.approx(1.5)  # type: ignore[attr-defined]  # milliseconds


def test_repeated_attribute_sets_keep_their_series_apart(metric_recorder: MetricRecorder) -> None:
    # The attribute dicts are built once per set and reused: each set must stay its own series.
    metrics = metric_recorder.metrics
    for _ in range(3):
        metrics.record_rpc("leadgw.v1.LeadService", "ScoreLeads", 0, 0.001)
    metrics.record_rpc("leadgw.v1.LeadService", "ScoreLeads", 3, 0.001)
    metrics.record_rpc("inference.GRPCInferenceService", "ModelInfer", 0, 0.001)
    metrics.record_queue_wait("lead_scorer", "1", 0.0)
    metrics.record_queue_wait("lead_scorer", "1", 0.0)
    metrics.record_queue_wait("lead_scorer", "2", 0.0)

    counts = {
        (a["rpc.method"], a["rpc.grpc.status_code"]): p.count  # type: ignore[attr-defined]
        for a, p in metric_recorder.points("rpc.server.duration")
    }
    assert counts == {("ScoreLeads", 0): 3, ("ScoreLeads", 3): 1, ("ModelInfer", 0): 1}
    waits = {
        a["version"]: p.count  # type: ignore[attr-defined]
        for a, p in metric_recorder.points("leadgw.batcher.queue_wait")
    }
    assert waits == {"1": 2, "2": 1}
    assert metrics.recording
    assert not Metrics.noop().recording


def test_noop_metrics_accept_every_call() -> None:
    metrics = Metrics.noop()
    metrics.record_rpc("s", "m", 0, 0.1)
    metrics.record_batch("m", "1", 1, 0.1)
    metrics.record_queue_wait("m", "1", 0.1)
    metrics.record_llm_tokens(1, 1)
    metrics.record_llm_error("timeout")
    metrics.record_summary_cache(True)
    metrics.observe_queue_depth("m", lambda: 1)()
    metrics.observe_breaker_state("e", lambda: 0)()
