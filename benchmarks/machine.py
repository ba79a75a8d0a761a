"""The machine and software a run happened on, for the result file."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

PACKAGES = ("leadgw", "grpcio", "protobuf", "onnxruntime", "numpy", "hdrhistogram", "psutil")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    return {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "hostname": platform.node(),
        # Other work on the machine when the run started (read before any run: ``run_bench``);
        # the figures share the cores with it.
        "load_average_1m": load_average_1m(),
    }


def load_average_1m() -> float:
    return round(os.getloadavg()[0], 2)


def package_versions(extra: dict[str, str | None] | None = None) -> dict[str, str | None]:
    """Python and the packages whose versions change the figures; ``extra`` for peers' own."""
    versions: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    versions.update(extra or {})
    return versions
