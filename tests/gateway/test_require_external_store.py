"""require_external_store: with it, the gateway refuses the embedded notes store and says to
use a Qdrant server (replicas would otherwise each keep notes the others never see)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.server import start
from gateway.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_refuses_the_embedded_store(tmp_path: Path, workers: str) -> None:
    env = {
        **os.environ,
        "LEADGW_REQUIRE_EXTERNAL_STORE": "true",
        "LEADGW_DATA_DIR": str(tmp_path / "data"),
    }
    env.pop("LEADGW_QDRANT_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--port", "0", "--workers", workers],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert "leadgw ready" not in done.stdout
    assert "require_external_store" in done.stderr and "LEADGW_QDRANT_URL" in done.stderr
    # Nothing was started: not even the shared embedded store of --workers.
    assert not (tmp_path / "data" / "qdrant").exists()


async def test_start_refuses_it_too(tmp_path: Path) -> None:
    settings = Settings(port=0, data_dir=tmp_path / "data", require_external_store=True)
    with pytest.raises(ValueError, match="Qdrant server"):
        await start(settings)
