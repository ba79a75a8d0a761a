"""``--tracing``: the leadgw targets' closed-loop throughput at several trace sampling ratios.

Each level gets a gateway of its own (the sampler is read at start-up): ``off`` is the gateway's
default (no span exporter, nothing sampled); a ratio exports with the real OTLP/gRPC exporter,
``parentbased_traceidratio``, to a discard collector the bench starts. Levels run in turn, and
with ``rounds`` > 1 the sequence repeats, each round starting one level later (``round_order``),
so a drift of the machine within a round falls on every level alike instead of always on the
last. Throughput is compared as the mean ok req/s of a level over the ``off`` mean.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.progress import ProgressSink
from benchmarks.results import RunResult
from benchmarks.runner import run_load
from benchmarks.servers import ServerStartError, start_listening_server
from benchmarks.targets import GrpcUnaryTarget, Preflight, TargetError

if TYPE_CHECKING:
    from benchmarks.suite import BenchConfig

OFF = "off"
# Issue 7: the throughput a sampling ratio may cost, as a share of the tracing-off throughput.
COST_TARGETS = {0.01: 0.03, 1.0: 0.15}


FULL = "/full"  # a level's suffix: the gateway builds every stage's span (trace_detail = full)
# Student's t for a two-sided 90% interval, by degrees of freedom (rounds - 1).
T90 = dict(enumerate((
    6.314, 2.920, 2.353, 2.132, 2.015, 1.943, 1.895, 1.860, 1.833, 1.812, 1.796, 1.782, 1.771,
    1.761, 1.753, 1.746, 1.740, 1.734, 1.729, 1.725, 1.721, 1.717, 1.714, 1.711, 1.708, 1.706,
    1.703, 1.701, 1.699, 1.697,
), start=1))  # fmt: skip


def t90(degrees: int) -> float:
    """Student's t for a two-sided 90% interval; past 30 degrees, 30's (a little wide)."""
    return T90[min(degrees, 30)]


def parse_levels(text: str) -> tuple[str, ...]:
    """``off,0.01,1.0,1.0/full`` → ("off", "0.01", "1", "1/full"); ``off`` is added first when
    missing. A ``/full`` level runs the gateway with every stage's span (its default is lean)."""
    levels: list[str] = []
    for part in (p.strip().lower() for p in text.split(",") if p.strip()):
        if part == OFF:
            levels.append(OFF)
            continue
        ratio_text, full = part.removesuffix(FULL), part.endswith(FULL)
        try:
            ratio = float(ratio_text)
        except ValueError:
            raise ValueError(
                f"--tracing: {part!r} is neither 'off' nor a ratio (optionally with /full)"
            ) from None
        if not 0 < ratio <= 1:
            raise ValueError(f"--tracing: a sampling ratio is in (0, 1], not {ratio_text}")
        levels.append(f"{ratio:g}{FULL if full else ''}")
    if OFF not in levels:
        levels.insert(0, OFF)
    return tuple(dict.fromkeys(levels))


def ratio_of(level: str) -> float:
    return float(level.removesuffix(FULL))


def label(level: str) -> str:
    # :g, not :.0%: a ratio of 0.0001 must not read as "0%".
    if level == OFF:
        return "tracing off"
    spans = ", full spans" if level.endswith(FULL) else ""
    return f"sampling {ratio_of(level) * 100:g}%{spans}"


def cost_interval(level_rps: list[float], off_rps: list[float]) -> tuple[float, float] | None:
    """The 90% confidence interval of the mean cost (1 - level/off) over paired rounds: each
    round's level ran within a few seconds of its own tracing-off run, so the drift of the
    machine between rounds cancels in the pair. None with fewer than two rounds."""
    costs = [1 - a / b for a, b in zip(level_rps, off_rps, strict=True) if b > 0]
    n = len(costs)
    if n < 2:
        return None
    mean = sum(costs) / n
    sd = (sum((c - mean) ** 2 for c in costs) / (n - 1)) ** 0.5
    half = t90(n - 1) * sd / n**0.5
    return mean - half, mean + half


def round_order(levels: tuple[str, ...], round_no: int) -> tuple[str, ...]:
    """The levels in the order round ``round_no`` (from 1) runs them: rotated by one a round.
    With a fixed order the last level always ran latest in its round, where a machine that
    slows over a round (as this one often does) charges it a cost that is not tracing's."""
    shift = (round_no - 1) % len(levels)
    return levels[shift:] + levels[:shift]


def tracing_env(level: str, collector: str | None) -> dict[str, str]:
    """The gateway's environment for ``level``; inherited OTEL_* are dropped so only ours count."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["OTEL_METRICS_EXPORTER"] = "none"
    env["LEADGW_TRACE_DETAIL"] = "full" if level.endswith(FULL) else "lean"
    if level == OFF or collector is None:
        env["OTEL_TRACES_EXPORTER"] = "none"
        return env
    env.update(
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="grpc",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=f"http://{collector}",
        OTEL_EXPORTER_OTLP_TRACES_INSECURE="true",
        OTEL_TRACES_SAMPLER="parentbased_traceidratio",
        OTEL_TRACES_SAMPLER_ARG=f"{ratio_of(level):g}",
    )
    return env


@dataclass(slots=True)
class TracingRow:
    """One target at one level, over every round."""

    target: str
    level: str
    runs: list[str]  # labels in the runs list
    ok_rps: float  # mean over rounds
    p50_ms: float
    p99_ms: float
    throughput_ratio: float | None  # ok_rps over the same target's tracing-off ok_rps
    cost: float | None  # 1 − ratio: the share of throughput tracing took
    cost_ci90: tuple[float, float] | None  # 90% interval of the mean of the rounds' own costs
    cost_target: float | None
    met: bool | None
    spans_exported: int  # received by the collector over the level's gateway lifetime
    exports: int
    # The gateway's CPU per successful request (mean over rounds), and its ratio to tracing off's:
    # the cost as work done, less noisy than throughput on a machine the client shares.
    server_cpu_us: float | None = None
    cpu_ratio: float | None = None


@dataclass(slots=True)
class TracingResult:
    levels: list[str]
    rounds: int
    rows: list[TracingRow]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _one_level(
    config: BenchConfig,
    level: str,
    round_no: int,
    targets: list[GrpcUnaryTarget],
    progress: ProgressSink,
) -> tuple[list[RunResult], dict[str, int], dict[str, int | None]]:
    shape = replace(config.shape, mode="closed")
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="leadgw-bench-otlp-") as tmp:
        counts_path = Path(tmp) / "counts.json"
        collector = None
        servers = {}
        if level != OFF:
            command = [sys.executable, "-m", "benchmarks.discard_collector",
                       "--counts", str(counts_path)]  # fmt: skip
            collector = stack.enter_context(
                start_listening_server("otlp-discard", command, config.server_ready_timeout_s)
            )
            servers["otlp-discard"] = collector
        command = [
            *config.leadgw_command,
            "--port", "0",
            "--model-repository", str(config.model_repository),
        ]  # fmt: skip
        progress.note(f"starting leadgw with {label(level)} (round {round_no})")
        env = tracing_env(level, collector.address if collector else None)
        gateway = stack.enter_context(
            start_listening_server("leadgw-tracing", command, config.server_ready_timeout_s, env)
        )
        runs = []
        for base in targets:
            name = f"{base.name} [{label(level)}] #{round_no}"
            target = replace(base, name=name, address=gateway.address, server_pid=gateway.pid)
            preflight = _preflight(target, config.shape.connect_timeout_s)
            runs.append(run_load(target, shape, preflight, progress, name))
        # The gateway flushes its spans when it stops; then the collector writes its counts.
        exit_codes = {f"leadgw-tracing {level} #{round_no}": gateway.stop()}
        if collector is not None:
            exit_codes[f"otlp-discard {level} #{round_no}"] = collector.stop()
        counts = json.loads(counts_path.read_text()) if counts_path.exists() else {}
    return runs, counts, exit_codes


def _preflight(target: GrpcUnaryTarget, timeout_s: float) -> Preflight:
    return asyncio.run(target.preflight(timeout_s))


def run_tracing(
    config: BenchConfig, levels: tuple[str, ...], rounds: int, targets: list[GrpcUnaryTarget],
    progress: ProgressSink,
) -> tuple[list[RunResult], TracingResult, dict[str, int | None]]:  # fmt: skip
    """Every level, ``rounds`` times, each against its own gateway."""
    by_key: dict[tuple[str, str], list[RunResult]] = {}
    spans: dict[str, dict[str, int]] = {level: {"spans": 0, "exports": 0} for level in levels}
    all_runs: list[RunResult] = []
    exit_codes: dict[str, int | None] = {}
    for round_no in range(1, rounds + 1):
        for level in round_order(levels, round_no):
            try:
                runs, counts, codes = _one_level(config, level, round_no, targets, progress)
            except ServerStartError as exc:
                raise TargetError(f"--tracing {level}: {exc}") from None
            exit_codes.update(codes)
            for key in ("spans", "exports"):
                spans[level][key] += int(counts.get(key, 0))
            for base, run in zip(targets, runs, strict=True):
                by_key.setdefault((base.name, level), []).append(run)
            all_runs += runs
    rows = []
    for base in targets:
        off_rps = _mean([r.ok_rps for r in by_key[(base.name, OFF)]])
        off_cpu = _cpu_per_request_us(by_key[(base.name, OFF)])
        for level in levels:
            runs = by_key[(base.name, level)]
            ok_rps = _mean([r.ok_rps for r in runs])
            cpu_us = _cpu_per_request_us(runs)
            ratio = ok_rps / off_rps if off_rps and level != OFF else None
            cost = None if ratio is None else 1 - ratio
            # The targets are for the default (lean) span set.
            lean = level != OFF and not level.endswith(FULL)
            cost_target = COST_TARGETS.get(ratio_of(level)) if lean else None
            off_runs = by_key[(base.name, OFF)]
            interval = (
                None
                if level == OFF
                else cost_interval([r.ok_rps for r in runs], [r.ok_rps for r in off_runs])
            )
            rows.append(
                TracingRow(
                    target=base.name,
                    level=level,
                    runs=[r.target for r in runs],
                    ok_rps=ok_rps,
                    p50_ms=_mean([r.latency_ms.p50 for r in runs]),
                    p99_ms=_mean([r.latency_ms.p99 for r in runs]),
                    throughput_ratio=ratio,
                    cost=cost,
                    cost_ci90=interval,
                    cost_target=cost_target,
                    met=None if cost is None or cost_target is None else cost <= cost_target,
                    spans_exported=spans[level]["spans"],
                    exports=spans[level]["exports"],
                    server_cpu_us=cpu_us,
                    cpu_ratio=cpu_us / off_cpu if cpu_us and off_cpu and level != OFF else None,
                )
            )
    return all_runs, TracingResult(list(levels), rounds, rows), exit_codes


def _cpu_per_request_us(runs: list[RunResult]) -> float | None:
    """Mean over rounds of the gateway's CPU µs per successful request; None if not measured."""
    per_run = [
        r.server_cpu.seconds / r.ok * 1e6 for r in runs if r.server_cpu is not None and r.ok > 0
    ]
    return _mean(per_run) if per_run else None


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0
