"""MLServer as a peer, from its own environment (benchmarks/mlserver/setup.sh makes it)."""

from __future__ import annotations

import pytest
from bench_helpers import BUNDLED_MODEL, ROOT, SHORT

from benchmarks.mlserver_peer import DEFAULT_VENV, mlserver_version

pytestmark = [
    pytest.mark.bench,
    pytest.mark.skipif(
        not BUNDLED_MODEL.exists() or mlserver_version(DEFAULT_VENV) is None,
        reason="MLServer not installed (benchmarks/mlserver/setup.sh) or no bundled model",
    ),
]


def test_mlserver_serves_the_lead_model_under_load(bench) -> None:
    run = bench(*SHORT, "--targets", "mlserver", "--batch", "2", "--no-plots", timeout=240)
    assert run.returncode == 0, run.stderr
    result = run.result()
    assert result["versions"]["mlserver"]
    assert result["server_exit_codes"] == {"mlserver": 0}
    (r,) = result["runs"]
    assert r["target"] == "mlserver" and r["ok"] > 0
    assert r["ok"] + sum(r["errors"].values()) == r["sent"]
    assert r["server_cpu"] is not None
    assert "parallel_workers=0" in result["targets"]["mlserver"]["kind"]
    assert str(ROOT) in result["parameters"]["model_repository"]
