"""The report of a bench: one JSON file with every parameter and figure, and a Markdown table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.genai_report import genai_sections
from benchmarks.results import RunResult
from benchmarks.rounds import FIGURES, REFERENCES, median_range
from benchmarks.sweep import SweepResult


def _ms(value: float) -> str:
    return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 100 else f"{value:.0f}"


def _load(run: RunResult) -> str:
    shape = run.shape
    pooled = f", {shape['rounds']} rounds pooled" if shape.get("rounds", 1) > 1 else ""
    if run.mode == "closed" and run.in_process:
        return f"closed, in-process, 1 at a time{pooled}"
    if run.mode == "closed":
        return f"closed, {shape['concurrency']} in flight{pooled}"
    return f"open, {shape['arrival']} {shape['rate']:g}/s{pooled}"


def rounds_section(rounds: dict[str, Any]) -> str:
    """``--rounds``: each target's figures over a reference's in the same round, as the median
    and range over the rounds (from result.json's ``rounds.ratios``)."""
    lines = [
        "Each figure is the target's over the reference's in the same round: the median "
        f"(lowest–highest) over {rounds['count']} rounds, the targets interleaved (round r "
        "starts with target r). Server CPU is per answered request.",
        "",
        "| mode | target | against | " + " | ".join(f"{h} ×" for _, h, _ in FIGURES) + " |",
        "|---|---|---|" + "---|" * len(FIGURES),
    ]
    for ratio in rounds["ratios"]:
        cells = []
        for figure, _, _ in FIGURES:
            median, span = ratio[f"{figure}_median"], ratio[f"{figure}_range"]
            cells.append("-" if median is None else f"{median:.2f} ({span[0]:.2f}–{span[1]:.2f})")
        lines.append(
            f"| {ratio['mode']} | {ratio['target']} | {ratio['against']} | {' | '.join(cells)} |"
        )
    return "\n".join(lines)


def _cpu(run: RunResult) -> tuple[str, str]:
    server = "-" if run.server_cpu is None else f"{run.server_cpu.cores:.2f}"
    return f"{run.client_cpu.cores:.2f}", server


def runs_table(runs: list[RunResult]) -> str:
    header = (
        "| target | load | rows/req | achieved req/s | ok req/s | rows/s | p50 ms | p90 ms "
        "| p99 ms | p99.9 ms | max ms | errors | client CPU | server CPU |"
    )
    lines = [header, "|" + "---|" * 14]
    for run in runs:
        lat = run.latency_ms
        client, server = _cpu(run)
        errors = ", ".join(f"{c} {n}" for c, n in run.errors.items()) or "0"
        lines.append(
            f"| {run.target} | {_load(run)} | {run.rows_per_request} | {run.achieved_rps:,.0f} "
            f"| {run.ok_rps:,.0f} | {run.rows_per_s:,.0f} | {_ms(lat.p50)} | {_ms(lat.p90)} "
            f"| {_ms(lat.p99)} | {_ms(lat.p999)} | {_ms(lat.max)} | {errors} "
            f"| {client} | {server} |"
        )
    return "\n".join(lines)


def sweeps_table(sweeps: list[SweepResult]) -> str:
    """One line per sweep: the highest rate under the SLO, how finely the knee is known, and
    that rate as a ratio to the transport floor's and MLServer's in the same run (the same
    round, when there are rounds, which then get a column of their own)."""
    best = {(sweep.round, sweep.target): sweep.best_rps for sweep in sweeps}
    rounds = len({sweep.round for sweep in sweeps}) > 1
    lines = [
        ("| round " if rounds else "")
        + "| target | p99 SLO ms | highest rate under SLO | first failing rate | × transport floor "
        "| × MLServer | steps (offered/s → p99 ms; r = repeated) | stopped by |",
        ("|---" if rounds else "") + "|---|---|---|---|---|---|---|---|",
    ]
    for sweep in sweeps:
        repeated = set(sweep.repeated)
        steps = ", ".join(
            f"{s.offered_rps:,.0f} → {_ms(s.latency_ms.p99)}{' (r)' if i in repeated else ''}"
            for i, s in enumerate(sweep.steps)
            if s.offered_rps
        )
        failed = "none" if sweep.failed_rps is None else f"{sweep.failed_rps:,.0f}/s"
        floor = best.get((sweep.round, "transport-floor"))
        mlserver = best.get((sweep.round, "mlserver"))
        lines.append(
            (f"| {sweep.round} " if rounds else "")
            + f"| {sweep.target} | {sweep.plan['slo_ms']:g} | {_rate(sweep.best_rps)} | {failed} "
            f"| {_ratio(sweep.best_rps, floor)} | {_ratio(sweep.best_rps, mlserver)} | {steps} "
            f"| {sweep.stop_reason} |"
        )
    return "\n".join(lines)


def sweep_rounds_table(sweeps: list[SweepResult], ratios: list[dict[str, Any]]) -> str:
    """``--rounds`` with sweeps: per target the median capacity and each round's, and its ratio
    to each reference read within each round, as the median (lowest–highest) over the rounds
    (from result.json's ``rounds.sweep_ratios``)."""
    rounds: dict[str, list[SweepResult]] = {}
    for sweep in sorted(sweeps, key=lambda s: s.round):
        rounds.setdefault(sweep.target, []).append(sweep)
    references = [r for r in REFERENCES if any(ratio["against"] == r for ratio in ratios)]
    by_pair = {(ratio["target"], ratio["against"]): ratio for ratio in ratios}
    lines = [
        "Capacity is the highest Poisson rate whose p99 met the SLO (none: no step passed); "
        "its median is over the rounds that found one. Each ratio is the target's capacity "
        "over the reference's in the same round, as the median (lowest–highest) over the "
        "rounds in which both found one (n/a: a round in which either did not). ≥: every "
        "step of that round passed, so its capacity is at least that.",
        "",
        "| target | capacity, median | each round | "
        + " | ".join(f"× {r}" for r in references)
        + " |",
        "|---|---|---|" + "---|" * len(references),
    ]
    for target, own in rounds.items():
        summary = median_range([sweep.best_rps for sweep in own])
        each = ", ".join(
            ("≥" if sweep.failed_rps is None and sweep.best_rps else "") + _rate(sweep.best_rps)
            for sweep in own
        )
        cells = [_sweep_ratio(by_pair.get((target, against))) for against in references]
        lines.append(
            f"| {target} | {'none' if summary is None else _rate(summary[0])} | {each} "
            f"| {' | '.join(cells)} |"
        )
    return "\n".join(lines)


def _sweep_ratio(ratio: dict[str, Any] | None) -> str:
    if ratio is None:
        return "-"
    values = ratio["per_round"]["capacity_rps"]
    missing = sum(v is None for v in values)
    n_a = f"; {missing} of {len(values)} rounds n/a" if missing else ""
    median, span = ratio["capacity_rps_median"], ratio["capacity_rps_range"]
    if median is None:
        return f"n/a in all {len(values)} rounds"
    return f"{median:.2f} ({span[0]:.2f}–{span[1]:.2f}{n_a})"


def _at_end(machine: dict[str, Any]) -> str:
    end = machine.get("load_average_1m_at_end")  # absent from result files before 2026-11-29
    return "" if end is None else f", {end} at the end"


def _rate(rps: float | None) -> str:
    return "none" if rps is None else f"{rps:,.0f}/s"


def _ratio(rps: float | None, against: float | None) -> str:
    if rps is None or not against:
        return "-"
    return f"{rps / against:.2f}"


def markdown(report: dict[str, Any], runs: list[RunResult], sweeps: list[SweepResult]) -> str:
    machine = report["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in report["versions"].items() if v)
    parts = [
        f"# leadgw bench — {report['started_at']}",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Machine: {machine['cpu_model']}, {machine['logical_cores']} logical cores, "
        f"{machine['memory_gib']} GiB; {machine['os']}; load average "
        f"{machine['load_average_1m']} at the start{_at_end(machine)}. Versions: {versions}.",
        "",
        "Latency is measured by the client, in milliseconds, over the measured window (warm-up "
        "excluded); open-loop latency counts from each request's intended send time. CPU is in "
        "cores (CPU seconds per second) over the window; client and server share this machine.",
        "",
    ]
    if runs:
        parts += [runs_table(runs), ""]
    rounds = report.get("rounds") or {}
    if rounds.get("ratios"):
        parts += ["## Rounds: ratios within each round", "", rounds_section(rounds), ""]
    if sweeps and rounds.get("count", 1) > 1:
        parts += [
            "## Rate sweep: capacity over rounds",
            "",
            sweep_rounds_table(sweeps, rounds.get("sweep_ratios", [])),
            "",
            "## Rate sweep: each round",
            "",
            sweeps_table(sweeps),
            "",
        ]
    elif sweeps:
        parts += ["## Rate sweep", "", sweeps_table(sweeps), ""]
    parts += genai_sections(report.get("genai", {}))
    if report["targets"]:
        parts += ["## Targets", ""]
        for name, info in report["targets"].items():
            parts.append(
                f"- **{name}** ({info['kind']}): {info['where']}; request {info['request_bytes']} "
                f"B, response {info['response_bytes']} B; {info['detail']}"
            )
        parts.append("")
    if report["skipped"]:
        parts += ["## Skipped", ""]
        parts += [f"- **{name}**: {why}" for name, why in report["skipped"].items()]
        parts.append("")
    if report["warnings"]:
        parts += ["## Warnings", ""]
        parts += [f"- {w}" for w in report["warnings"]]
        parts.append("")
    if report.get("plots"):
        parts += ["## Plots", ""]
        parts += [f"![{Path(p).stem}]({Path(p).name})" for p in report["plots"]]
        parts.append("")
    return "\n".join(parts)


def write_report(
    out: Path, report: dict[str, Any], runs: list[RunResult], sweeps: list[SweepResult]
) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "result.json"
    md_path = out / "report.md"
    full = {
        **report,
        "runs": [r.to_dict() for r in runs],
        "sweeps": [s.to_dict() for s in sweeps],
    }
    json_path.write_text(json.dumps(full, indent=2, default=str) + "\n")
    md_path.write_text(markdown(report, runs, sweeps))
    return json_path, md_path
