"""Pools the rounds of several ``leadgw bench --tracing`` runs of one code into one estimate.

Each round pairs a level with that round's tracing-off run, as the bench does; pooling two
five-round runs gives ten pairs and an interval about 1.5x narrower than either's. Prints, per
level, the mean ok req/s and server CPU per request, the mean of the rounds' costs with its 90%
interval, and the mean of the rounds' CPU-per-request ratios with its 90% interval::

    python scripts/tracing_pool.py A1/result.json A2/result.json
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path

from benchmarks.tracing_suite import cost_interval, t90

_RUN = re.compile(r".*\[(?P<level>.*)\] #(?P<round>\d+)$")


def interval(values: list[float]) -> tuple[float, float, float]:
    mean = statistics.mean(values)
    half = t90(len(values) - 1) * statistics.stdev(values) / len(values) ** 0.5
    return mean, mean - half, mean + half


def main(paths: list[str]) -> None:
    runs: dict[tuple[str, tuple[int, int]], tuple[float, float]] = {}
    for number, path in enumerate(paths):
        for run in json.loads(Path(path).read_text())["runs"]:
            match = _RUN.match(run["target"])
            if match is None or not run.get("server_cpu") or not run["ok"]:
                continue
            cpu_us = run["server_cpu"]["seconds"] / run["ok"] * 1e6
            runs[match["level"], (number, int(match["round"]))] = (run["ok_rps"], cpu_us)
    rounds = sorted({key[1] for key in runs})
    levels = list(dict.fromkeys(key[0] for key in runs))
    off = [runs["tracing off", r] for r in rounds]
    print(f"{len(rounds)} paired rounds from {len(paths)} run(s)")
    for level in levels:
        pairs = [(runs[level, r], o) for r, o in zip(rounds, off, strict=True)]
        rps = statistics.mean(p[0][0] for p in pairs)
        cpu = statistics.mean(p[0][1] for p in pairs)
        line = f"{level:>15}: {rps:7.0f} ok req/s, {cpu:6.0f} µs/req"
        if level != "tracing off":
            costs = [1 - p[0][0] / p[1][0] for p in pairs]
            low, high = cost_interval([p[0][0] for p in pairs], [p[1][0] for p in pairs]) or (0, 0)
            ratio, ratio_low, ratio_high = interval([p[0][1] / p[1][1] for p in pairs])
            line += (
                f"; cost {statistics.mean(costs):+.1%} (90% CI {low:+.1%} to {high:+.1%});"
                f" CPU x{ratio:.3f} (90% CI {ratio_low:.3f} to {ratio_high:.3f})"
            )
        print(line)


if __name__ == "__main__":
    main(sys.argv[1:])
