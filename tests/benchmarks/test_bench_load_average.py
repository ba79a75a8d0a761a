"""The report's load average "at the start" is read before the first run, not when the report is
written (a sweep of ten minutes had reported the load its own runs made), and the load at the end
is reported beside it."""

from __future__ import annotations

import argparse
import itertools
import json

from benchmarks import machine as machine_module
from benchmarks.progress import NoProgress
from benchmarks.suite import run_bench
from gateway.cli import bench as bench_cli


def test_the_load_at_the_start_is_read_before_any_run(tmp_path, monkeypatch) -> None:
    readings = itertools.count(1)
    # Each reading of the load average is the next whole number: the first is the start's.
    monkeypatch.setattr(machine_module.os, "getloadavg", lambda: (float(next(readings)), 0.0, 0.0))
    parser = argparse.ArgumentParser()
    bench_cli.add_arguments(parser)
    args = parser.parse_args(
        ["--targets", "onnx-floor", "--duration", "0.5", "--warmup", "0.1", "--no-progress",
         "--no-plots", "--out", str(tmp_path / "out")]
    )  # fmt: skip
    outcome = run_bench(bench_cli.config_from(args, "leadgw bench"), NoProgress())
    result = json.loads(outcome.json_path.read_text())
    assert result["runs"][0]["ok"] > 0
    assert result["machine"]["load_average_1m"] == 1.0
    assert result["machine"]["load_average_1m_at_end"] > 1.0
    report = outcome.markdown_path.read_text()
    assert "load average 1.0 at the start, " in report
    assert f"{result['machine']['load_average_1m_at_end']} at the end" in report
