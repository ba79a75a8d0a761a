"""The sweep's search, driven by fake measurements: where it steps, when it measures a step
again, and how finely it brackets the knee. No server, no clock."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from benchmarks.report import sweeps_table
from benchmarks.sweep import GENERATOR, Measured, SweepPlan, SweepResult, search

SLOW = "p99 25.00 ms > SLO 10 ms"


class Server:
    """Passes every rate up to ``knee``, its p99 rising with the rate towards the SLO (10 ms);
    ``spoiled`` lists measurements (by their position, 0 = first) that fail whatever the rate,
    as a transient would. ``quiet_p99`` fixes a passing step's p99 instead: a knee that comes
    without warning."""

    def __init__(
        self,
        knee: float,
        spoiled: Callable[[int, float], str | None] | None = None,
        quiet_p99: float | None = None,
    ):
        self.knee = knee
        self.spoiled = spoiled
        self.quiet_p99 = quiet_p99
        self.rates: list[float] = []

    def __call__(self, rate: float) -> Measured:
        index = len(self.rates)
        self.rates.append(rate)
        if self.spoiled is not None and (why := self.spoiled(index, rate)) is not None:
            return Measured(why, 25.0)
        if rate > self.knee:
            return Measured(SLOW, 25.0)
        return Measured(None, self.quiet_p99 or 9.0 * rate / self.knee)


def test_brackets_the_knee_within_the_resolution() -> None:
    server = Server(knee=566.0)
    found = search(SweepPlan(start_rate=200, factor=2, resolution=0.10), server)
    assert found.best is not None and found.failed is not None
    assert found.best <= 566.0 < found.failed
    assert found.failed <= found.best * 1.10
    assert found.resolution is not None and found.resolution <= 0.10
    # 200, 400, 800 then bisection: each step halves the bracket's log-width.
    assert server.rates[:3] == [200, 400, 800]
    assert all(why is None or why == SLOW for _, why, _ in found.measured)


@pytest.mark.parametrize("resolution", [0.05, 0.10, 0.25])
def test_a_finer_resolution_takes_more_steps(resolution: float) -> None:
    found = search(SweepPlan(start_rate=100, factor=2, resolution=resolution), Server(knee=777.0))
    assert found.resolution is not None and found.resolution <= resolution
    assert found.best is not None and found.best <= 777.0


def test_refine_caps_the_bisection() -> None:
    server = Server(knee=566.0)
    found = search(SweepPlan(start_rate=200, factor=2, refine=1, resolution=0.01), server)
    assert len(server.rates) == 4  # 200, 400, 800, one bisection step
    assert found.resolution is not None and found.resolution > 0.01


def test_a_first_step_spoiled_by_start_up_is_measured_again() -> None:
    # The fresh server's first step fails (start-up work), the repeat passes.
    server = Server(knee=600.0, spoiled=lambda i, rate: "12 errors" if i == 0 else None)
    found = search(SweepPlan(start_rate=300, factor=1.5), server)
    assert server.rates[:2] == [300, 300]
    assert found.measured[1] == (300, None, True)
    assert found.best is not None and found.best >= 450


def test_a_spoiled_bisection_step_is_measured_again() -> None:
    # The first bisection step (the fourth measurement: 250, 500, 1000, then 707) is spoiled
    # once; measured again it passes, and the knee is still found instead of the sweep settling
    # below the spoiled rate.
    server = Server(knee=900.0, spoiled=lambda i, rate: SLOW if i == 3 else None)
    found = search(SweepPlan(start_rate=250, factor=2, resolution=0.10), server)
    assert server.rates[3] == server.rates[4] == pytest.approx(707.1, abs=0.1)
    assert found.measured[4][1:] == (None, True)
    assert found.best is not None and found.failed is not None
    assert found.best <= 900.0 < found.failed <= found.best * 1.10


def test_a_real_knee_in_bisection_costs_one_repeat_per_failure() -> None:
    server = Server(knee=566.0)
    found = search(SweepPlan(start_rate=200, factor=2, resolution=0.10, retries=1), server)
    failures = [rate for rate, why, repeat in found.measured if why is not None and not repeat]
    repeats = [rate for rate, _, repeat in found.measured if repeat]
    assert repeats == failures[1:]  # every failure but the climb's first is confirmed once


def test_a_climbing_step_spoiled_after_a_quiet_step_is_measured_again() -> None:
    # The floor in a sweep on 2026-12-01: 1,012/s passed with p99 1.41 ms, 1,519/s failed with
    # 59.6 ms, and the sweep took 1,444/s for a knee near 4,500/s. A step that quiet before a
    # failure is measured again, and the repeat decides.
    server = Server(knee=4_500.0, spoiled=lambda i, rate: SLOW if i == 4 else None)
    found = search(SweepPlan(start_rate=300, factor=1.5, max_steps=8), server)
    assert server.rates[4] == server.rates[5] == pytest.approx(1518.75)
    assert found.measured[5][1:] == (None, True)
    assert found.best is not None and 4_000 < found.best <= 4_500


def test_a_knee_without_warning_costs_one_repeat_and_stays() -> None:
    # Every pass reads 1 ms; the knee is real: the repeat fails too, and the knee is kept.
    server = Server(knee=700.0, quiet_p99=1.0)
    found = search(SweepPlan(start_rate=300, factor=1.5, resolution=0.10), server)
    assert server.rates[:5] == [300, 450, 675, 1012.5, 1012.5]
    assert found.best is not None and found.failed is not None
    assert found.best <= 700.0 < found.failed <= found.best * 1.10


def test_a_climbing_failure_after_a_busy_step_is_the_knee() -> None:
    # The step before the failure ran at 90% of the SLO: the failure is not measured again.
    server = Server(knee=1_000.0)
    search(SweepPlan(start_rate=900, factor=1.5, max_steps=2, refine=0), server)
    assert server.rates == [900, 1350]


def test_errors_mid_sweep_are_measured_again_but_latency_failures_are_not() -> None:
    server = Server(knee=10_000.0, spoiled=lambda i, rate: "3 errors" if i == 1 else None)
    found = search(SweepPlan(start_rate=100, factor=2, max_steps=3), server)
    assert server.rates[:3] == [100, 200, 200]
    plain = Server(knee=150.0)
    search(SweepPlan(start_rate=100, factor=2, max_steps=3, refine=0), plain)
    assert plain.rates == [100, 200]  # a p99 failure above every pass is the knee, not a fluke
    assert found.best == 400


def test_retries_are_bounded() -> None:
    server = Server(knee=1e9, spoiled=lambda i, rate: "5 errors")
    found = search(SweepPlan(start_rate=100, factor=2, max_steps=2, retries=2), server)
    assert found.best is None
    # each of the two steps: measured once and again twice
    assert server.rates == [100, 100, 100, 50, 50, 50]
    assert "no step passed" in found.stop_reason or "errors" in found.stop_reason


def test_the_generator_limit_is_never_measured_again() -> None:
    server = Server(knee=1e9, spoiled=lambda i, rate: GENERATOR if rate > 300 else None)
    found = search(SweepPlan(start_rate=200, factor=2), server)
    assert server.rates[:2] == [200, 400]
    assert len(server.rates) == len(set(server.rates))  # no rate measured twice
    assert found.best is not None and found.best <= 300 < (found.failed or 0)


def test_every_step_passing_says_so() -> None:
    found = search(SweepPlan(start_rate=100, factor=2, max_steps=3), Server(knee=1e9))
    assert found.best == 400 and found.failed is None
    assert "every step passed" in found.stop_reason


def test_the_table_gives_ratios_to_the_floor_and_mlserver() -> None:
    def result(target: str, best: float | None, failed: float | None) -> SweepResult:
        return SweepResult(target, {"slo_ms": 10.0}, best_rps=best, failed_rps=failed)

    table = sweeps_table(
        [
            result("scoreleads", 600.0, 650.0),
            result("transport-floor", 1200.0, 1300.0),
            result("mlserver", 300.0, 320.0),
        ]
    )
    line = next(row for row in table.splitlines() if row.startswith("| scoreleads |"))
    assert "| 600/s | 650/s | 0.50 | 2.00 |" in line
    floor = next(row for row in table.splitlines() if row.startswith("| transport-floor |"))
    assert "| 1.00 | 4.00 |" in floor
