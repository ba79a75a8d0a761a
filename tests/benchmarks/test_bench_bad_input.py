"""Bad input ends with one clear line on stderr and a non-zero exit, never a hang or traceback."""

from __future__ import annotations

import socket

import pytest
from bench_helpers import SHORT

pytestmark = pytest.mark.bench


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once the socket is closed


def _one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("leadgw bench: error:")]
    assert len(errors) == 1, stderr
    return errors[0]


def test_unreachable_address(bench, tmp_path) -> None:
    address = f"127.0.0.1:{_closed_port()}"
    run = bench(
        *SHORT,
        "--targets", "",
        "--oip", f"{address}/lead_scorer",
        "--features", "4",
        "--model-repository", str(tmp_path),
        "--connect-timeout", "1",
        timeout=60,
    )  # fmt: skip
    assert run.returncode == 2
    assert f"cannot connect to {address}" in _one_error_line(run.stderr)


def test_rate_the_generator_cannot_send(bench) -> None:
    run = bench(*SHORT, "--targets", "transport-floor", "--mode", "open", "--rate", "1e9")
    assert run.returncode == 2
    assert "more than 2 generator process(es) can send" in _one_error_line(run.stderr)


def test_unknown_target(bench) -> None:
    run = bench("--targets", "triton-magic")
    assert run.returncode == 2
    assert "unknown target 'triton-magic'" in _one_error_line(run.stderr)


def test_malformed_oip_address(bench) -> None:
    run = bench("--targets", "", "--oip", "localhost-no-port")
    assert run.returncode == 2
    assert "expected [NAME=]HOST:PORT/MODEL" in _one_error_line(run.stderr)


def test_unknown_model(bench) -> None:
    run = bench(*SHORT, "--targets", "modelinfer", "--model", "no_such_model", "--features", "16")
    assert run.returncode == 2
    line = _one_error_line(run.stderr)
    assert "modelinfer:" in line and "NOT_FOUND" in line


def test_missing_mlserver_is_reported_and_the_rest_runs(bench, tmp_path) -> None:
    run = bench(
        *SHORT,
        "--targets", "transport-floor,mlserver",
        "--features", "8",
        "--model-repository", str(tmp_path),
        "--mlserver-venv", str(tmp_path / "no-venv"),
        "--no-plots",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    result = run.result()
    assert "not installed" in result["skipped"]["mlserver"]
    assert [r["target"] for r in result["runs"]] == ["transport-floor"]
    assert "mlserver skipped: not installed" in run.stderr
    assert "## Skipped" in (run.out / "report.md").read_text()


@pytest.mark.parametrize("mode", ["closed", "sweep"])
@pytest.mark.parametrize(("rounds", "message"), [("0", "--rounds"), ("21", "between 1 and 20")])
def test_rounds_out_of_range(bench, mode: str, rounds: str, message: str) -> None:
    run = bench(*SHORT, "--targets", "transport-floor", "--mode", mode, "--rounds", rounds)
    assert run.returncode == 2
    assert message in run.stderr
    assert "Traceback" not in run.stderr
    assert not (run.out / "result.json").exists()
