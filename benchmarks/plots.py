"""PNG plots of a bench: latency percentiles per target, and p99 against throughput per sweep."""

from __future__ import annotations

from pathlib import Path

from benchmarks.results import RunResult
from benchmarks.sweep import SweepResult

PERCENTILES = (("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p999", "p99.9"))
ROUND_STYLES = ("-", "--", ":", "-.")


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")  # files only; never a window
    import matplotlib.pyplot as plt

    return plt


def _load_label(run: RunResult) -> str:
    if run.in_process and run.mode == "closed":
        return "in-process, 1 at a time"
    if run.mode == "closed":
        return f"c={run.shape['concurrency']}"
    return f"{run.shape['rate']:g}/s"


def latency_plot(runs: list[RunResult], path: Path) -> Path:
    """Grouped bars: one group per run (target and load), one bar per percentile, log scale."""
    plt = _pyplot()
    labels = [f"{r.target}\n{_load_label(r)}" for r in runs]
    width = 0.8 / len(PERCENTILES)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(runs) + 2), 4.5))
    for i, (field, name) in enumerate(PERCENTILES):
        values = [max(getattr(r.latency_ms, field), 1e-3) for r in runs]
        xs = [j + (i - (len(PERCENTILES) - 1) / 2) * width for j in range(len(runs))]
        ax.bar(xs, values, width, label=name)
    ax.set_xticks(range(len(runs)), labels, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("latency (ms, log scale)")
    ax.set_title("Latency percentiles per target")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def sweep_plot(sweeps: list[SweepResult], path: Path) -> Path:
    """p99 against achieved requests per second, one line per target (per target and round,
    with ``--rounds``: a target's rounds share a colour), with the SLO."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8.5, 4.5))
    targets = list(dict.fromkeys(sweep.target for sweep in sweeps))
    rounds = len({sweep.round for sweep in sweeps}) > 1
    for sweep in sweeps:
        steps = sorted(sweep.steps, key=lambda s: s.achieved_rps)
        ax.plot(
            [s.achieved_rps for s in steps],
            [max(s.latency_ms.p99, 1e-3) for s in steps],
            marker="o",
            color=f"C{targets.index(sweep.target) % 10}",
            linestyle=ROUND_STYLES[(sweep.round - 1) % len(ROUND_STYLES)],
            label=f"{sweep.target} round {sweep.round}" if rounds else sweep.target,
        )
    if sweeps:
        ax.axhline(sweeps[0].plan["slo_ms"], color="red", linestyle="--", label="p99 SLO")
    ax.set_xlabel("achieved requests/s")
    ax.set_ylabel("p99 latency (ms, log scale)")
    ax.set_yscale("log")
    ax.set_title("Throughput against p99 (open-loop rate sweep)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
