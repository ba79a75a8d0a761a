"""How many CPUs this process may use: the cgroup v2 quota (what a container's CPU limit sets)
or, without one, the CPUs it may run on (its affinity).

In a pod limited to 2 CPUs on a 64-core node the affinity still lists 64 cores; the quota in
``cpu.max`` is what says 2.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def cgroup_cpu_limit(cpu_max: Path = CGROUP_CPU_MAX) -> int | None:
    """CPUs allowed by a cgroup v2 ``cpu.max`` file ("<quota> <period>", rounded up, at least
    1), or None when there is no limit ("max ...") or no such file (cgroup v1, not Linux)."""
    try:
        quota, _, period = cpu_max.read_text().strip().partition(" ")
    except OSError:
        return None
    if quota == "max":
        return None
    try:
        cpus = int(quota) / int(period or "100000")
    except ValueError:
        return None  # not the format the kernel writes: no limit we can read
    return max(1, math.ceil(cpus))


def usable_cpus(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """The CPU quota when there is one, capped by the affinity; else the affinity."""
    affinity = len(os.sched_getaffinity(0))
    limit = cgroup_cpu_limit(cpu_max)
    return affinity if limit is None else min(limit, affinity)
