"""A short real bench against leadgw and both floors: the report has every field, and the counts
add up. No timing figure is asserted."""

from __future__ import annotations

import base64

import pytest
from bench_helpers import SHORT
from hdrh.histogram import HdrHistogram

pytestmark = pytest.mark.bench

RUN_FIELDS = {
    "target", "mode", "shape", "rows_per_request", "processes", "offered_rps", "sent", "ok",
    "errors", "not_sent", "cap_waits", "achieved_rps", "ok_rps", "rows_per_s", "latency_ms",
    "send_lag_ms", "client_cpu", "server_cpu", "request_bytes", "response_bytes",
    "generator_limited", "warnings", "histogram",
}  # fmt: skip
PERCENTILES = {"count", "p50", "p90", "p99", "p999", "max", "mean"}
TARGETS = ["scoreleads", "scoreleads-columns", "modelinfer", "onnx-floor", "transport-floor"]


def test_bench_reports_every_field_and_counts_add_up(bench) -> None:
    run = bench(
        *SHORT,
        "--targets", ",".join(TARGETS),
        "--mode", "closed,open",
        "--concurrency", "4",
        "--rate", "100",
        "--batch", "3",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    result = run.result()

    assert {"cpu_model", "logical_cores", "physical_cores", "memory_gib"} <= set(result["machine"])
    for package in ("python", "grpcio", "protobuf", "onnxruntime", "numpy"):
        assert result["versions"][package]
    params = result["parameters"]
    assert params["batch"] == 3 and params["shape"]["concurrency"] == 4
    assert params["shape"]["rate"] == 100 and params["modes"] == ["closed", "open"]
    assert set(result["targets"]) == set(TARGETS)
    assert result["server_exit_codes"] == {"leadgw": 0, "transport-floor": 0}
    # The transport floor answers with leadgw's own ModelInfer response: the same size.
    assert (
        result["targets"]["transport-floor"]["response_bytes"]
        == result["targets"]["modelinfer"]["response_bytes"]
    )

    runs = result["runs"]
    assert [(r["target"], r["mode"]) for r in runs] == [
        (t, m) for m in ("closed", "open") for t in TARGETS
    ]
    for r in runs:
        assert set(r) >= RUN_FIELDS, r["target"]
        assert set(r["latency_ms"]) == PERCENTILES
        assert r["rows_per_request"] == 3
        assert r["ok"] > 0, (r["target"], r["warnings"])
        assert r["ok"] + sum(r["errors"].values()) == r["sent"]
        histogram = HdrHistogram.decode(base64.b64decode(r["histogram"]))
        assert histogram.get_total_count() == r["ok"] == r["latency_ms"]["count"]
        assert r["rows_per_s"] == pytest.approx(r["ok_rps"] * 3)
        assert r["client_cpu"]["seconds"] >= 0
        if r["target"] != "onnx-floor":
            assert r["server_cpu"] is not None
        if r["mode"] == "open":
            assert r["offered_rps"] == 100
            assert r["send_lag_ms"]["count"] == r["sent"]
        else:
            assert r["offered_rps"] is None

    markdown = (run.out / "report.md").read_text()
    assert "| target | load | rows/req |" in markdown
    for target in TARGETS:
        load = "in-process, 1 at a time" if target == "onnx-floor" else "4 in flight"
        assert f"| {target} | closed, {load} |" in markdown
        assert f"| {target} | open, poisson 100/s |" in markdown
    assert (run.out / "latency.png").read_bytes().startswith(b"\x89PNG")
    assert markdown in run.stdout


def test_sweep_writes_steps_and_plot(bench) -> None:
    run = bench(
        *SHORT,
        "--targets", "modelinfer",
        "--mode", "sweep",
        "--sweep-start", "50",
        "--sweep-max-steps", "2",
        "--sweep-refine", "0",
        "--sweep-step-duration", "1",
        "--slo-ms", "1000",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    (sweep,) = run.result()["sweeps"]
    assert sweep["target"] == "modelinfer"
    assert [s["offered_rps"] for s in sweep["steps"]] == [50, 100]
    assert sweep["best_rps"] in (None, 50, 100)
    assert sweep["stop_reason"]
    assert (run.out / "sweep.png").read_bytes().startswith(b"\x89PNG")
    assert "## Rate sweep" in (run.out / "report.md").read_text()
