"""Worker count from the cgroup v2 CPU quota, on cpu.max files written here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.cpu_quota import cgroup_cpu_limit, usable_cpus


def _cpu_max(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cpu.max"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "cpus"),
    [
        ("200000 100000\n", 2),  # limits.cpu: "2"
        ("150000 100000\n", 2),  # 1.5 CPUs: a second worker still has work
        ("50000 100000\n", 1),  # 500m: at least one
        ("400000 50000\n", 8),  # another period
        ("max 100000\n", None),  # no limit
        ("garbage\n", None),
    ],
)
def test_the_quota_in_cpu_max(tmp_path: Path, text: str, cpus: int | None) -> None:
    assert cgroup_cpu_limit(_cpu_max(tmp_path, text)) == cpus


def test_no_cpu_max_file_means_no_limit(tmp_path: Path) -> None:
    assert cgroup_cpu_limit(tmp_path / "absent") is None


def test_without_a_quota_the_affinity_decides(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    assert usable_cpus(tmp_path / "absent") == affinity
    assert usable_cpus(_cpu_max(tmp_path, "max 100000")) == affinity


def test_a_quota_below_the_affinity_wins_and_one_above_it_does_not(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    assert usable_cpus(_cpu_max(tmp_path, "100000 100000")) == 1
    above = _cpu_max(tmp_path, f"{(affinity + 3) * 100000} 100000")
    assert usable_cpus(above) == affinity
