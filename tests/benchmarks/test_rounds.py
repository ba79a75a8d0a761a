"""--rounds: each target's rounds pooled exactly, ratios read within each round, the targets'
order rotated; unit tests of benchmarks/rounds.py on made-up runs, and one real bench."""

from __future__ import annotations

import base64
import statistics

import pytest
from bench_helpers import SHORT
from hdrh.histogram import HdrHistogram

from benchmarks.histograms import Percentiles, new_histogram
from benchmarks.results import CpuUse, RunResult
from benchmarks.rounds import pooled, rotated, round_ratios


def made_run(
    target: str, latencies_us: list[int], server_s: float | None, rows: int = 1
) -> RunResult:
    histogram = new_histogram()
    for value in latencies_us:
        histogram.record_value(value)
    ok = len(latencies_us)
    return RunResult(
        target=target,
        mode="closed",
        shape={"mode": "closed", "duration_s": 2.0, "concurrency": 1},
        rows_per_request=rows,
        processes=1,
        offered_rps=None,
        sent=ok + 1,
        ok=ok,
        errors={"DEADLINE_EXCEEDED": 1},
        not_sent=0,
        cap_waits=0,
        achieved_rps=(ok + 1) / 2.0,
        ok_rps=ok / 2.0,
        rows_per_s=ok * rows / 2.0,
        latency_ms=Percentiles.of(histogram),
        send_lag_ms=Percentiles.of(new_histogram()),
        client_cpu=CpuUse(0.5, 0.25),
        server_cpu=None if server_s is None else CpuUse(server_s, server_s / 2.0),
        request_bytes=100,
        response_bytes=200,
        warnings=[f"{target} warned"],
        histogram=base64.b64encode(histogram.encode()).decode("ascii"),
    )


def test_pooled_adds_up_and_merges_the_histograms() -> None:
    a = made_run("scoreleads", [1000] * 30, 0.6, rows=3)
    b = made_run("scoreleads", [3000] * 10, 0.2, rows=3)
    one = pooled([a, b])
    assert (one.ok, one.sent) == (40, 42)
    assert one.errors == {"DEADLINE_EXCEEDED": 2}
    assert one.shape["duration_s"] == 4.0 and one.shape["rounds"] == 2
    assert one.ok_rps == pytest.approx(10.0) and one.rows_per_s == pytest.approx(30.0)
    assert one.server_cpu == CpuUse(pytest.approx(0.8), pytest.approx(0.2))
    assert one.client_cpu.seconds == pytest.approx(1.0)
    assert one.latency_ms.count == 40
    assert one.latency_ms.p50 == pytest.approx(1.0, rel=0.01)  # 30 of 40 at 1 ms
    assert one.latency_ms.p90 == pytest.approx(3.0, rel=0.01)
    merged = HdrHistogram.decode(base64.b64decode(one.histogram))
    assert merged.get_total_count() == 40
    assert one.warnings == ["round 1: scoreleads warned", "round 2: scoreleads warned"]
    # A round without the server's CPU leaves the pooled CPU unknown, not undercounted.
    assert pooled([a, made_run("scoreleads", [1000], None)]).server_cpu is None
    assert pooled([a]) is a


def test_rotated_starts_each_round_at_the_next_target() -> None:
    names = ["a", "b", "c"]
    assert [rotated(names, r) for r in range(4)] == [
        ["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"],
    ]  # fmt: skip
    assert rotated([], 3) == []


def test_round_ratios_are_read_within_each_round() -> None:
    # Round 1: scoreleads 2 ms, the floor 1 ms; round 2 both slower, 6 and 4 ms.
    rounds = [
        {
            "scoreleads": made_run("scoreleads", [2000] * 20, 0.4),
            "transport-floor": made_run("transport-floor", [1000] * 40, 0.4),
            "mlserver": made_run("mlserver", [4000] * 10, 0.5),
        },
        {
            "scoreleads": made_run("scoreleads", [6000] * 8, 0.4),
            "transport-floor": made_run("transport-floor", [4000] * 10, 0.5),
            "mlserver": made_run("mlserver", [5000] * 8, 0.5),
        },
    ]
    ratios = {(r.target, r.against): r for r in round_ratios("closed", rounds)}
    # The floor is compared with no one; MLServer with the floor only.
    assert set(ratios) == {
        ("scoreleads", "transport-floor"),
        ("mlserver", "transport-floor"),
        ("scoreleads", "mlserver"),
    }
    vs_floor = ratios[("scoreleads", "transport-floor")]
    assert vs_floor.per_round["p50_ms"] == [
        pytest.approx(2.0, rel=0.01),
        pytest.approx(1.5, rel=0.01),
    ]
    assert vs_floor.per_round["rows_per_s"] == [pytest.approx(0.5), pytest.approx(0.8)]
    # CPU per request: 0.4 s / 20 against 0.4 s / 40; then 0.4 / 8 against 0.5 / 10.
    assert vs_floor.per_round["cpu_us_per_request"] == [pytest.approx(2.0), pytest.approx(1.0)]
    median, low, high = vs_floor.summary("p50_ms")
    assert median == pytest.approx(statistics.median([2.0, 1.5]), rel=0.01)
    assert (low, high) == (pytest.approx(1.5, rel=0.01), pytest.approx(2.0, rel=0.01))
    as_dict = vs_floor.to_dict()
    assert as_dict["rows_per_s_range"] == [pytest.approx(0.5), pytest.approx(0.8)]
    assert round_ratios("closed", []) == []


@pytest.mark.bench
def test_bench_rounds_pool_and_report_ratios(bench) -> None:
    targets = ["modelinfer", "transport-floor"]
    run = bench(*SHORT, "--targets", ",".join(targets), "--concurrency", "2", "--rounds", "2")
    assert run.returncode == 0, run.stderr
    result = run.result()
    assert result["parameters"]["rounds"] == 2
    rounds = result["rounds"]["runs"]["closed"]
    # Round 1 runs the targets in order, round 2 starts with the second.
    assert [[r["target"] for r in one] for one in rounds] == [targets, targets[::-1]]
    for pooled_run in result["runs"]:
        own = [r for one in rounds for r in one if r["target"] == pooled_run["target"]]
        assert pooled_run["ok"] == sum(r["ok"] for r in own) > 0
        assert pooled_run["shape"]["rounds"] == 2
        assert pooled_run["latency_ms"]["count"] == pooled_run["ok"]
    [ratio] = result["rounds"]["ratios"]
    assert (ratio["target"], ratio["against"]) == ("modelinfer", "transport-floor")
    per_round = ratio["per_round"]["rows_per_s"]
    by_round = [{r["target"]: r for r in one} for one in rounds]
    assert per_round == [
        pytest.approx(one["modelinfer"]["rows_per_s"] / one["transport-floor"]["rows_per_s"])
        for one in by_round
    ]
    low, high = ratio["rows_per_s_range"]
    assert low <= ratio["rows_per_s_median"] <= high
    markdown = (run.out / "report.md").read_text()
    assert "## Rounds: ratios within each round" in markdown
    assert "| modelinfer | closed, 2 in flight, 2 rounds pooled |" in markdown
    assert "| closed | modelinfer | transport-floor |" in markdown
