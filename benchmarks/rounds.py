"""Rounds: each closed- or open-loop load, or each sweep, run several times with the targets
interleaved, so that a ratio between two targets is read from runs minutes apart, not from one
lucky or unlucky run.

On a shared machine one target's single run can land in a quiet minute and its peer's in a busy
one; the ratio then says more about the minute than the code. With ``--rounds N`` every target
runs N times, in rotated order (round r starts with target r, so none always runs first or
right after another's load), each round is compared within itself, and the report gives each
ratio's median and range over the rounds. The runs table pools each target's rounds (latency
histograms merged, counts and CPU added up). A sweep's rounds are not pooled: each round finds
its own capacity (highest rate under the SLO), compared within the round (``capacity_ratios``).
"""

from __future__ import annotations

import base64
import statistics
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from benchmarks.histograms import Percentiles, merge
from benchmarks.results import CpuUse, RunResult
from benchmarks.sweep import SweepResult

# Targets other targets are compared with, when they ran: the floor, then the peers.
REFERENCES = ("transport-floor", "mlserver", "modelinfer")

T = TypeVar("T")


def rotated(items: Sequence[T], round_index: int) -> list[T]:
    """``items`` starting at position ``round_index`` (mod their count)."""
    if not items:
        return []
    start = round_index % len(items)
    return [*items[start:], *items[:start]]


def pooled(runs: Sequence[RunResult]) -> RunResult:
    """One target's rounds as one run: histograms merged, counts and CPU seconds added up, rates
    over the summed windows; send lag is the worst round's; warnings keep their round."""
    if len(runs) == 1:
        return runs[0]
    first = runs[0]
    window = sum(r.shape["duration_s"] for r in runs)
    latency = merge([base64.b64decode(r.histogram) for r in runs])
    errors: dict[str, int] = {}
    for run in runs:
        for code, n in run.errors.items():
            errors[code] = errors.get(code, 0) + n
    sent = sum(r.sent for r in runs)
    ok = sum(r.ok for r in runs)
    client_s = sum(r.client_cpu.seconds for r in runs)
    server = [r.server_cpu.seconds for r in runs if r.server_cpu is not None]
    server_s = sum(server) if len(server) == len(runs) else None
    return replace(
        first,
        shape={**first.shape, "rounds": len(runs), "duration_s": window},
        sent=sent,
        ok=ok,
        errors=dict(sorted(errors.items())),
        not_sent=sum(r.not_sent for r in runs),
        cap_waits=sum(r.cap_waits for r in runs),
        achieved_rps=sent / window,
        ok_rps=ok / window,
        rows_per_s=ok * first.rows_per_request / window,
        latency_ms=Percentiles.of(latency),
        send_lag_ms=max((r.send_lag_ms for r in runs), key=lambda p: p.p90),
        client_cpu=CpuUse(client_s, client_s / window),
        server_cpu=None if server_s is None else CpuUse(server_s, server_s / window),
        generator_limited=any(r.generator_limited for r in runs),
        warnings=[f"round {i}: {w}" for i, r in enumerate(runs, 1) for w in r.warnings],
        histogram=base64.b64encode(latency.encode()).decode("ascii"),
    )


def cpu_us_per_request(run: RunResult) -> float | None:
    """The server's CPU per answered request, in µs; None without a server or an answer."""
    if run.server_cpu is None or not run.ok:
        return None
    return run.server_cpu.seconds / run.ok * 1e6


# Each compared figure: its name in result.json, its heading, and how to read it off a run.
FIGURES: tuple[tuple[str, str, Callable[[RunResult], float | None]], ...] = (
    ("rows_per_s", "rows/s", lambda r: r.rows_per_s),
    ("p50_ms", "p50", lambda r: r.latency_ms.p50 if r.latency_ms.count else None),
    ("p99_ms", "p99", lambda r: r.latency_ms.p99 if r.latency_ms.count else None),
    ("cpu_us_per_request", "server CPU per request", cpu_us_per_request),
)


@dataclass(frozen=True, slots=True)
class RoundRatio:
    """One target against one reference, figure by figure: each round's ratio, and their median
    and range."""

    mode: str
    target: str
    against: str
    per_round: dict[str, list[float | None]]

    def summary(self, figure: str) -> tuple[float, float, float] | None:
        """(median, lowest, highest) of the rounds' ratios of ``figure``; None if none."""
        return median_range(self.per_round[figure])

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mode": self.mode,
            "target": self.target,
            "against": self.against,
            "per_round": self.per_round,
        }
        for figure in self.per_round:
            summary = self.summary(figure)
            out[f"{figure}_median"] = None if summary is None else summary[0]
            out[f"{figure}_range"] = None if summary is None else [summary[1], summary[2]]
        return out


def median_range(values: Sequence[float | None]) -> tuple[float, float, float] | None:
    """(median, lowest, highest) of the values that are not None; None if none is."""
    known = [v for v in values if v is not None]
    if not known:
        return None
    return statistics.median(known), min(known), max(known)


def compared(names: Sequence[str]) -> Iterator[tuple[str, str]]:
    """(target, reference) for every reference in ``names`` and every other target; a reference
    is not compared with itself or with the ones listed after it in ``REFERENCES`` (the floor is
    nobody's ratio to MLServer)."""
    for position, against in enumerate(REFERENCES):
        if against in names:
            for target in names:
                if target != against and target not in REFERENCES[:position]:
                    yield target, against


def round_ratios(mode: str, rounds: Sequence[dict[str, RunResult]]) -> list[RoundRatio]:
    """Every target against every reference that ran in the same rounds, per round the target's
    figure over the reference's (pairs as ``compared`` gives them)."""
    if not rounds:
        return []
    ratios = []
    for target, against in compared(list(rounds[0])):
        per_round: dict[str, list[float | None]] = {}
        for figure, _, read in FIGURES:
            per_round[figure] = [_ratio(read(one[target]), read(one[against])) for one in rounds]
        ratios.append(RoundRatio(mode, target, against, per_round))
    return ratios


def capacity_ratios(sweeps: Sequence[SweepResult]) -> list[RoundRatio]:
    """Sweep rounds: every target's capacity (highest passing rate) over every reference's in
    the same round, as figure ``capacity_rps`` (pairs as ``compared`` gives them, in the order
    the targets first ran). A round in which either found no passing rate gives None, never a
    guess: the median and range are then over the other rounds."""
    by_round: dict[int, dict[str, float | None]] = {}
    for sweep in sweeps:
        by_round.setdefault(sweep.round, {})[sweep.target] = sweep.best_rps
    rounds = [by_round[r] for r in sorted(by_round)]
    names = list(dict.fromkeys(sweep.target for sweep in sweeps))
    return [
        RoundRatio(
            "sweep",
            target,
            against,
            {"capacity_rps": [_ratio(one.get(target), one.get(against)) for one in rounds]},
        )
        for target, against in compared(names)
    ]


def _ratio(value: float | None, against: float | None) -> float | None:
    if value is None or not against:
        return None
    return value / against
