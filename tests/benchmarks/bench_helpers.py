"""Helpers for the bench tests: run ``leadgw bench`` as a user does and read its results back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BUNDLED_MODEL = ROOT / "runtimes" / "bundled_models" / "lead_scorer" / "config.toml"
# A few seconds of load per run keeps the suite short on a shared 2-core machine.
SHORT = ("--duration", "1.5", "--warmup", "0.5", "--no-progress", "--processes", "2")


@dataclass
class BenchRun:
    returncode: int
    stdout: str
    stderr: str
    out: Path

    def result(self) -> dict[str, Any]:
        return json.loads((self.out / "result.json").read_text())


def run_bench(out: Path, *args: str, timeout: float = 150.0) -> BenchRun:
    """``python -m gateway bench ARGS --out OUT`` from the project root."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "bench", *args, "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return BenchRun(done.returncode, done.stdout, done.stderr, out)
