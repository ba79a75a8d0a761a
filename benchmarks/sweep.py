"""Rate sweep: open-loop steps at rising rates until p99 breaks the SLO, then bisection between
the last passing and the first failing rate until they are within the plan's resolution. The
answer is the highest rate that passed.

A failed step that may have been spoiled by a transient is measured again, and the repeat
decides: the sweep's first step (a fresh server may still be warming caches, connecting,
collecting), a bisection step (inside the bracket p99 is within noise of the SLO, and on a shared
machine the tail is not monotonic in load), a step below a rate that already passed, a climbing
step that failed right after a step with p99 under a quarter of the SLO (``QUIET_SHARE``), and a
step that failed by errors rather than by latency. A failure by the generator's own limit is
final. The search itself (``search``) only sees a ``measure(rate)`` function, so its logic is
tested with a fake one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from benchmarks.loadgen import LoadShape
from benchmarks.progress import ProgressSink
from benchmarks.results import RunResult
from benchmarks.runner import run_load
from benchmarks.targets import Preflight, Target

MAX_ERROR_SHARE = 0.001  # a step with more failed requests than this does not pass
GENERATOR = "the generator could not send this rate"
QUIET_SHARE = 0.25
"""A climbing step that fails right after a step whose p99 was under this share of the SLO is
measured again. One factor more load rarely takes p99 from that far under the SLO past it: of
the 49 climbing failures in four sweep runs on the 2-core machine (2026-11-30 and 12-01, SLO
10 ms, factor 1.5), 48 came after a step with p99 2.37-9.93 ms (one of them under 2.5 ms),
and the one spoiled step (the floor: 59.6 ms at 1,519/s, its knee near 4,500/s) after 1.41
ms. A real knee this rule repeats costs one step; the repeat decides."""


class Measured(NamedTuple):
    """One step's outcome as the search sees it."""

    why: str | None
    """None if the step passed, else why not (``verdict``)."""
    p99_ms: float


@dataclass(frozen=True, slots=True)
class SweepPlan:
    slo_ms: float = 10.0
    start_rate: float = 100.0
    factor: float = 2.0
    max_steps: int = 8
    refine: int = 8
    """Most bisection steps; bisection stops sooner once the bracket is within ``resolution``."""
    step_duration_s: float = 5.0
    resolution: float = 0.10
    """Bisect until the first failing rate is at most this much above the last passing one."""
    retries: int = 1
    """Times a step that looks spoiled by a transient is measured again."""


@dataclass(frozen=True, slots=True)
class Search:
    """What ``search`` found: the highest passing rate, the lowest failing rate above it, and
    every measurement in order (rate, why it failed or None, whether it was a repeat)."""

    best: float | None
    failed: float | None
    stop_reason: str
    measured: list[tuple[float, str | None, bool]]

    @property
    def resolution(self) -> float | None:
        """failed / best - 1: how finely the knee is known (None without both ends)."""
        if self.best is None or self.failed is None:
            return None
        return self.failed / self.best - 1


def search(plan: SweepPlan, measure: Callable[[float], Measured]) -> Search:
    """Finds the highest rate at which ``measure(rate)`` passes (its ``why`` is None)."""
    measured: list[tuple[float, str | None, bool]] = []
    passed: float | None = None
    failed: float | None = None
    last_pass_p99: float | None = None  # the p99 of the latest step that passed
    stop_reason = ""

    def step(rate: float) -> str | None:
        nonlocal last_pass_p99
        why, p99 = measure(rate)
        measured.append((rate, why, False))
        retries = 0
        while why is not None and retries < plan.retries and _looks_transient(rate, why):
            retries += 1
            why, p99 = measure(rate)
            measured.append((rate, why, True))
        if why is None:
            last_pass_p99 = p99
        return why

    def _looks_transient(rate: float, why: str) -> bool:
        if why == GENERATOR:
            return False  # the client's limit, not the server's: measuring again cannot help
        first = len(measured) == 1
        # Inside the bracket the p99 is within noise of the SLO: one spoiled step must not
        # decide where the knee is (on a shared machine p99 is not monotonic in load).
        near_the_knee = passed is not None and failed is not None and passed < rate < failed
        below_a_pass = passed is not None and rate <= passed
        sudden = (
            failed is None
            and last_pass_p99 is not None
            and last_pass_p99 < QUIET_SHARE * plan.slo_ms
        )
        return first or near_the_knee or below_a_pass or sudden or not why.startswith("p99")

    rate = plan.start_rate
    for _ in range(plan.max_steps):
        why = step(rate)
        if why is None:
            passed = max(rate, passed or 0.0)
            if failed is not None:
                break
            rate *= plan.factor
            continue
        failed = rate if failed is None else min(failed, rate)
        stop_reason = f"{rate:g}/s: {why}"
        if why == GENERATOR or passed is not None:
            break
        rate /= plan.factor  # the first step already failed: look lower
    refined = 0
    while (
        passed is not None
        and failed is not None
        and failed > passed * (1 + plan.resolution)
        and refined < plan.refine
    ):
        refined += 1
        middle = math.sqrt(passed * failed)
        why = step(middle)
        if why is None:
            passed = middle
        else:
            failed = middle
            stop_reason = f"{middle:g}/s: {why}"
    if passed is None:
        stop_reason = stop_reason or "no step passed"
    elif failed is None:
        stop_reason = f"every step passed up to {passed:g}/s (raise --sweep-max-steps)"
    return Search(passed, failed, stop_reason, measured)


@dataclass(slots=True)
class SweepResult:
    target: str
    plan: dict[str, Any]
    steps: list[RunResult] = field(default_factory=list)
    best_rps: float | None = None
    failed_rps: float | None = None
    stop_reason: str = ""
    repeated: list[int] = field(default_factory=list)
    """Indices into ``steps`` of the measurements that repeated a spoiled step."""
    round: int = 1
    """Which of ``--rounds`` this sweep ran in, from 1."""

    @property
    def resolution(self) -> float | None:
        if self.best_rps is None or self.failed_rps is None:
            return None
        return self.failed_rps / self.best_rps - 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "round": self.round,
            "plan": self.plan,
            "best_rps": self.best_rps,
            "failed_rps": self.failed_rps,
            "resolution": self.resolution,
            "stop_reason": self.stop_reason,
            "repeated_steps": self.repeated,
            "steps": [s.to_dict() for s in self.steps],
        }


def verdict(result: RunResult, slo_ms: float) -> str | None:
    """None if the step passed, else why not."""
    if result.generator_limited:
        return GENERATOR
    if result.ok == 0:
        return "no request succeeded"
    if result.error_count > MAX_ERROR_SHARE * max(result.sent, 1):
        return f"{result.error_count} errors"
    if result.latency_ms.p99 > slo_ms:
        return f"p99 {result.latency_ms.p99:.2f} ms > SLO {slo_ms:g} ms"
    return None


def run_sweep(
    target: Target,
    shape: LoadShape,
    preflight: Preflight,
    plan: SweepPlan,
    progress: ProgressSink,
    round_of: tuple[int, int] = (1, 1),
) -> SweepResult:
    """Open-loop steps of ``shape`` (its rate replaced by each step's) against ``target``;
    ``round_of`` is (this round, all rounds), for the labels."""
    sweep = SweepResult(target.name, {"slo_ms": plan.slo_ms, **_plan_dict(plan)}, round=round_of[0])
    of = f" round {round_of[0]}/{round_of[1]}" if round_of[1] > 1 else ""

    def measure(rate: float) -> Measured:
        label = f"{target.name} sweep {rate:,.0f}/s{of}"
        step_shape = replace(shape, mode="open", rate=rate, duration_s=plan.step_duration_s)
        result = run_load(target, step_shape, preflight, progress, label)
        sweep.steps.append(result)
        why = verdict(result, plan.slo_ms)
        progress.note(f"  {label}: p99 {result.latency_ms.p99:.2f} ms, {why or 'pass'}")
        return Measured(why, result.latency_ms.p99)

    found = search(plan, measure)
    sweep.best_rps, sweep.failed_rps = found.best, found.failed
    sweep.stop_reason = found.stop_reason
    sweep.repeated = [i for i, (_, _, repeat) in enumerate(found.measured) if repeat]
    return sweep


def _plan_dict(plan: SweepPlan) -> dict[str, Any]:
    return {
        "start_rate": plan.start_rate,
        "factor": plan.factor,
        "max_steps": plan.max_steps,
        "refine": plan.refine,
        "resolution": plan.resolution,
        "retries": plan.retries,
        "step_duration_s": plan.step_duration_s,
    }
