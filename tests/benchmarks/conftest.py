"""Fixtures of the bench tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from bench_helpers import BenchRun, run_bench


@pytest.fixture
def bench(tmp_path: Path) -> Callable[..., BenchRun]:
    """Run ``leadgw bench`` with its report in a fresh folder under ``tmp_path`` each call."""
    counter = iter(range(100))

    def run(*args: str, timeout: float = 150.0) -> BenchRun:
        return run_bench(tmp_path / f"run{next(counter)}", *args, timeout=timeout)

    return run
