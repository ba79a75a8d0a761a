"""Rate sweep: open-loop steps at rising rates until p99 breaks the SLO, then bisection between
the last passing and the first failing rate. The answer is the highest rate that passed."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from benchmarks.loadgen import LoadShape
from benchmarks.progress import ProgressSink
from benchmarks.results import RunResult
from benchmarks.runner import run_load
from benchmarks.targets import Preflight, Target

MAX_ERROR_SHARE = 0.001  # a step with more failed requests than this does not pass


@dataclass(frozen=True, slots=True)
class SweepPlan:
    slo_ms: float = 10.0
    start_rate: float = 100.0
    factor: float = 2.0
    max_steps: int = 8
    refine: int = 2
    step_duration_s: float = 5.0


@dataclass(slots=True)
class SweepResult:
    target: str
    plan: dict[str, Any]
    steps: list[RunResult] = field(default_factory=list)
    best_rps: float | None = None
    stop_reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "plan": self.plan,
            "best_rps": self.best_rps,
            "stop_reason": self.stop_reason,
            "steps": [s.to_dict() for s in self.steps],
        }


def verdict(result: RunResult, slo_ms: float) -> str | None:
    """None if the step passed, else why not."""
    if result.generator_limited:
        return "the generator could not send this rate"
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
) -> SweepResult:
    """Open-loop steps of ``shape`` (its rate replaced by each step's) against ``target``."""
    sweep = SweepResult(target.name, {"slo_ms": plan.slo_ms, **_plan_dict(plan)})
    passed: float | None = None
    failed: float | None = None

    def step(rate: float) -> str | None:
        label = f"{target.name} sweep {rate:,.0f}/s"
        step_shape = replace(shape, mode="open", rate=rate, duration_s=plan.step_duration_s)
        result = run_load(target, step_shape, preflight, progress, label)
        sweep.steps.append(result)
        why = verdict(result, plan.slo_ms)
        progress.note(f"  {label}: p99 {result.latency_ms.p99:.2f} ms, {why or 'pass'}")
        return why

    rate = plan.start_rate
    for _ in range(plan.max_steps):
        why = step(rate)
        if why is None:
            passed = rate
            if failed is not None:
                break
            rate *= plan.factor
        else:
            failed = rate
            sweep.stop_reason = f"{rate:g}/s: {why}"
            if why.startswith("the generator") or passed is not None:
                break
            rate /= plan.factor  # the first step already failed: look lower
    if passed is not None and failed is not None and failed > passed:
        for _ in range(plan.refine):
            middle = math.sqrt(passed * failed)
            why = step(middle)
            if why is None:
                passed = middle
            else:
                failed = middle
                sweep.stop_reason = f"{middle:g}/s: {why}"
    sweep.best_rps = passed
    if passed is None:
        sweep.stop_reason = sweep.stop_reason or "no step passed"
    elif failed is None:
        sweep.stop_reason = f"every step passed up to {passed:g}/s (raise --sweep-max-steps)"
    return sweep


def _plan_dict(plan: SweepPlan) -> dict[str, Any]:
    return {
        "start_rate": plan.start_rate,
        "factor": plan.factor,
        "max_steps": plan.max_steps,
        "refine": plan.refine,
        "step_duration_s": plan.step_duration_s,
    }
