"""What shadow scoring leaves in the telemetry: one ``shadow score`` span per drained chunk, in a
trace of its own, linked to each request with that request's comparison on the link; and the
metrics, recorded in bulk, adding up to the per-request comparisons."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import numpy as np
import pytest
from opentelemetry import trace

from runtimes.served_model import ServedModel
from runtimes.shadow import ShadowLane, compare
from tests.gateway.telemetry.telemetry_helpers import TRACER, MetricRecorder, SpanRecorder
from tests.runtimes.shadow_helpers import MODEL, features_of, load_versions

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> tuple[ServedModel, ServedModel]:
    return load_versions(Path(tmp_path_factory.mktemp("shadow-spans")))


async def test_one_span_per_chunk_links_each_request_with_its_comparison(
    versions, spans: SpanRecorder, metric_recorder: MetricRecorder
) -> None:
    live, candidate = versions
    metrics = metric_recorder.metrics
    lane = ShadowLane(live, candidate, 1.0, metrics.record_shadow, metrics.record_shadow_dropped)
    sizes = [1, 6, 3, 12]
    requests = [features_of(live, n, 40 + i) for i, n in enumerate(sizes)]
    tracer = trace.get_tracer(TRACER)
    contexts = []
    for i, features in enumerate(requests):
        with tracer.start_as_current_span(f"request {i}") as span:
            lane.observe(features, live.session.run(features), None)
            contexts.append(span.get_span_context())
    while lane.queued_rows:
        await asyncio.sleep(0.01)
    await lane.close()

    (chunk,) = await spans.wait_for("shadow score")
    assert chunk.parent is None  # not a child of the request that happened to start the drainer
    assert chunk.context.trace_id not in {c.trace_id for c in contexts}
    attributes = dict(chunk.attributes or {})
    assert attributes["leadgw.shadow.requests"] == 4
    assert attributes["leadgw.leads"] == sum(sizes)
    assert (attributes["leadgw.live_version"], attributes["leadgw.shadow_version"]) == ("1", "2")
    reference = [
        compare(live, live.session.run(f), candidate, candidate.session.run(f)) for f in requests
    ]
    assert attributes["leadgw.shadow.band_agreements"] == sum(r.agreements for r in reference)
    assert [(link.context.trace_id, link.context.span_id) for link in chunk.links] == [
        (c.trace_id, c.span_id) for c in contexts
    ]
    for link, expected, n in zip(chunk.links, reference, sizes, strict=True):
        got = dict(link.attributes or {})
        assert got["leadgw.leads"] == n
        assert got["leadgw.shadow.band_agreements"] == expected.agreements
        assert got["leadgw.shadow.max_abs_difference"] == pytest.approx(
            float(np.abs(expected.differences).max())
        )
        rho = float(expected.rank_correlations[0])
        if math.isnan(rho):
            assert "leadgw.shadow.rank_correlation" not in got
        else:
            assert got["leadgw.shadow.rank_correlation"] == pytest.approx(rho, abs=1e-12)

    labels = {"model": MODEL, "live_version": "1", "shadow_version": "2"}
    leads = {
        p[0]["band_agreement"]: p[1].value
        for p in metric_recorder.points("leadgw.shadow.leads")
        if all(p[0].get(k) == v for k, v in labels.items())
    }
    assert leads.get("agree", 0) == sum(r.agreements for r in reference)
    assert leads.get("agree", 0) + leads.get("disagree", 0) == sum(sizes)
    differences = metric_recorder.points("leadgw.shadow.probability_difference")
    assert sum(p.count for _, p in differences) == sum(sizes)
    assert sum(p.sum for _, p in differences) == pytest.approx(
        sum(float(np.abs(r.differences).sum()) for r in reference)
    )
    ranked = metric_recorder.points("leadgw.shadow.rank_distance")
    defined = [float(r.rank_correlations[0]) for r in reference]
    defined = [rho for rho in defined if not math.isnan(rho)]
    assert sum(p.count for _, p in ranked) == len(defined) == 3  # not the one-lead request
    assert metric_recorder.points("leadgw.shadow.dropped") == []
