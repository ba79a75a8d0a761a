"""Shadow lanes: batched comparisons equal per-request ones, sampling by a sticky share of
leads, a bounded queue that drops and counts, and a clean stop.

Both versions are real ONNX sessions of the bundled model (the candidate with narrower bands,
so that band agreement is not trivially total); nothing is faked.
"""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from runtimes.routing import canary_share, shadow_share
from runtimes.served_model import ServedModel
from runtimes.shadow import (
    ShadowComparison,
    ShadowLane,
    compare,
    compare_batch,
    rank_correlation,
)
from tests.runtimes.shadow_helpers import MODEL, features_of, load_versions

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> tuple[ServedModel, ServedModel]:
    return load_versions(tmp_path_factory.mktemp("shadow-lane"))


class Recorder:
    def __init__(self) -> None:
        self.compared: list[ShadowComparison] = []
        self.dropped = 0

    def record(self, comparison: ShadowComparison) -> None:
        self.compared.append(comparison)

    def record_dropped(self, model: str, live: str, candidate: str, copies: int) -> None:
        assert (model, live, candidate) == (MODEL, "1", "2")
        self.dropped += copies

    def lane(
        self, live: ServedModel, candidate: ServedModel, rate: float = 1.0, **kw
    ) -> ShadowLane:
        return ShadowLane(live, candidate, rate, self.record, self.record_dropped, **kw)


async def _drain_and_close(lane: ShadowLane) -> None:
    """Waits until the drainer took every copy, then closes (the chunk being scored finishes)."""
    while lane.queued_rows:
        await asyncio.sleep(0.01)
    await lane.close()


def _joined(parts: list[ShadowComparison]) -> ShadowComparison:
    first = parts[0]
    return ShadowComparison(
        first.model,
        first.live_version,
        first.candidate_version,
        np.concatenate([p.differences for p in parts]),
        np.concatenate([p.sizes for p in parts]),
        np.concatenate([p.band_agreements for p in parts]),
        np.concatenate([p.rank_correlations for p in parts]),
    )


def _assert_same(batched: ShadowComparison, reference: list[ShadowComparison]) -> None:
    expected = _joined(reference)
    np.testing.assert_array_equal(batched.sizes, expected.sizes)
    np.testing.assert_array_equal(batched.differences, expected.differences)
    np.testing.assert_array_equal(batched.band_agreements, expected.band_agreements)
    np.testing.assert_allclose(
        batched.rank_correlations, expected.rank_correlations, rtol=0, atol=1e-12
    )
    np.testing.assert_array_equal(
        np.isnan(batched.rank_correlations), np.isnan(expected.rank_correlations)
    )


def test_batched_comparison_equals_each_request_compared_alone(versions) -> None:
    live, candidate = versions
    rng = np.random.default_rng(3)
    sizes = [1, 2, 5, 40, 3, 1, 17, 2, 9]
    p_live = [rng.uniform(0, 0.2, n) for n in sizes]
    p_cand = [p + rng.normal(0, 0.02, p.size) for p in p_live]
    # Ties inside a request, a reversed order, and constant columns on either side.
    p_live[2] = np.array([0.1, 0.1, 0.05, 0.2, 0.1])
    p_cand[3] = 0.3 - p_live[3]  # the same leads in the opposite order
    p_live[4] = np.full(3, 0.07)
    p_cand[7] = np.full(2, 0.01)
    reference = [
        compare(live, {"probability": a}, candidate, {"probability": b})
        for a, b in zip(p_live, p_cand, strict=True)
    ]
    batched = compare_batch(
        live, np.concatenate(p_live), candidate, np.concatenate(p_cand), np.array(sizes)
    )
    _assert_same(batched, reference)
    rho = batched.rank_correlations
    assert np.isnan(rho[[0, 4, 5, 7]]).all()  # one lead, constant live, one lead, constant shadow
    assert rho[3] == pytest.approx(-1.0)
    assert rank_correlation(p_live[1], p_cand[1]) == pytest.approx(rho[1])
    # The candidate's narrower bands make some leads disagree.
    assert 0 < batched.agreements < batched.leads


async def test_the_lane_coalesces_copies_into_one_run_with_per_request_results(versions) -> None:
    live, candidate = versions
    recorder = Recorder()
    lane = recorder.lane(live, candidate)
    sizes = [3, 1, 8, 2, 20, 1]
    requests = [features_of(live, n, seed) for seed, n in enumerate(sizes)]
    for features in requests:  # one loop pass: the drainer has not run yet
        lane.observe(features, live.session.run(features), None)
    await _drain_and_close(lane)
    assert recorder.dropped == 0
    assert len(recorder.compared) == 1  # one drain, one chunk, one candidate run
    reference = [
        compare(live, live.session.run(f), candidate, candidate.session.run(f)) for f in requests
    ]
    _assert_same(recorder.compared[0], reference)
    assert recorder.compared[0].sizes.tolist() == sizes


async def test_chunks_and_record_slices_keep_whole_requests(versions) -> None:
    live, candidate = versions
    recorder = Recorder()
    lane = recorder.lane(live, candidate, chunk_rows=10, interval_s=0.0)
    requests = [features_of(live, n, 100 + n) for n in (4, 4, 4, 30, 1, 70, 2)]
    for features in requests:
        lane.observe(features, live.session.run(features), None)
    await _drain_and_close(lane)
    reference = [
        compare(live, live.session.run(f), candidate, candidate.session.run(f)) for f in requests
    ]
    _assert_same(_joined(recorder.compared), reference)
    assert len(recorder.compared) > 3  # chunks of at most 10 rows (a bigger request alone)


def test_a_rate_compares_a_sticky_share_of_leads_independent_of_the_canary(versions) -> None:
    live, candidate = versions
    lane = Recorder().lane(live, candidate, rate=0.3)
    ids = [f"lead-{i}" for i in range(4000)]

    def keys() -> tuple[str, list[str]]:
        return "acme", ids

    picked = lane._sample(keys, len(ids))
    assert picked is not None
    share = picked.size / len(ids)
    bound = 4 * math.sqrt(0.3 * 0.7 / len(ids))  # 4 sigma: fails about 1 run in 15,000
    assert abs(share - 0.3) < bound, share
    again = lane._sample(keys, len(ids))
    assert again is not None and again.tolist() == picked.tolist()  # sticky
    expected = [i for i, lead in enumerate(ids) if shadow_share(MODEL, "acme", lead) < 0.3]
    assert picked.tolist() == expected
    # Among the leads a 30% canary takes, the shadow still samples about 30%: not the same leads.
    on_canary = [i for i, lead in enumerate(ids) if canary_share(MODEL, "acme", lead) < 0.3]
    overlap = len(set(on_canary) & set(expected)) / len(on_canary)
    assert abs(overlap - 0.3) < 4 * math.sqrt(0.3 * 0.7 / len(on_canary)), overlap
    # Another tenant's lead of the same id is another lead.
    other = lane._sample(lambda: ("other", ids), len(ids))
    assert other is not None and other.tolist() != picked.tolist()
    lane.rate = 0.0
    assert lane._sample(keys, len(ids)).size == 0  # type: ignore[union-attr]
    lane.rate = 1.0
    assert lane._sample(keys, len(ids)) is None  # every row, and no ids asked for


async def test_sampled_rows_are_the_ones_compared(versions) -> None:
    live, candidate = versions
    recorder = Recorder()
    lane = recorder.lane(live, candidate, rate=0.5)
    features = features_of(live, 200, 7)
    ids = [f"L-{i}" for i in range(200)]
    lane.observe(features, live.session.run(features), lambda: ("default", ids))
    await _drain_and_close(lane)
    rows = [i for i, lead in enumerate(ids) if shadow_share(MODEL, "default", lead) < 0.5]
    reference = compare(
        live,
        live.session.run(features[rows]),
        candidate,
        candidate.session.run(features[rows]),
    )
    _assert_same(_joined(recorder.compared), [reference])


async def test_a_full_queue_drops_and_counts_copies(versions) -> None:
    live, candidate = versions
    recorder = Recorder()
    lane = recorder.lane(live, candidate, max_rows=5, max_copies=3)
    one = features_of(live, 1, 1)
    outputs = live.session.run(one)
    for _ in range(4):  # one loop pass: nothing drains in between
        lane.observe(one, outputs, None)
    assert recorder.dropped == 1  # the 4th: three copies queued already
    big = features_of(live, 3, 2)
    lane.observe(big, live.session.run(big), None)
    assert recorder.dropped == 2  # 3 + 3 rows > 5
    while lane.queued_rows:
        await asyncio.sleep(0.01)
    lane.observe(features_of(live, 9, 3), live.session.run(features_of(live, 9, 3)), None)
    assert recorder.dropped == 2  # a copy larger than the queue is let in when it is empty
    await _drain_and_close(lane)
    assert sum(c.requests for c in recorder.compared) + recorder.dropped == 6


async def test_close_stops_the_drainer_and_counts_what_was_left(versions) -> None:
    live, candidate = versions
    recorder = Recorder()
    lane = recorder.lane(live, candidate, interval_s=60.0)
    features = features_of(live, 2, 4)
    outputs = live.session.run(features)
    lane.observe(features, outputs, None)
    while lane.queued_rows:  # the first drain runs at once...
        await asyncio.sleep(0.01)
    for _ in range(5):  # ...the next only after the interval: these wait
        lane.observe(features, outputs, None)
    task = lane._task
    assert task is not None and not task.done()
    await asyncio.wait_for(lane.close(), 5)  # does not wait out the interval
    assert task.done() and not task.cancelled()
    assert sum(c.requests for c in recorder.compared) == 1
    assert recorder.dropped == 5
    lane.observe(features, outputs, None)  # closed: ignored, not queued, not counted
    assert lane.queued_rows == 0 and recorder.dropped == 5
    assert candidate.in_flight == 0
