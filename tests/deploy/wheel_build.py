"""The one way a leadgw wheel is built and installed: by the install test and by the Dockerfile.

tests/deploy/test_dockerfile.py checks that the Dockerfile runs these very commands, so the
install the test exercises is the install the image performs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# `python -m` + these + <dir> + <source>: offline (no isolated build environment to download).
WHEEL_BUILD = ("pip", "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir")
# The wheel, never the source tree and never editable.
WHEEL_GLOB = "leadgw-*.whl"


def build_sources() -> list[str]:
    """What a build needs from the tree: the project files and the packages' top folders (the
    Dockerfile's builder copies the same)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    return ["pyproject.toml", "README.md", *(pattern.rstrip("*") for pattern in include)]


def build_wheel(work_dir: Path) -> Path:
    """Builds the leadgw wheel of this source tree under ``work_dir`` and returns its path.

    From a copy of the build sources, as the image's builder stage does: an in-tree build would
    reuse a stale build/ folder of the tree and hide a file the package data no longer lists.
    """
    source = work_dir / "source"
    source.mkdir(parents=True)
    for name in build_sources():
        if (ROOT / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", ".venv*")
            shutil.copytree(ROOT / name, source / name, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, source / name)
    wheel_dir = work_dir / "wheels"
    subprocess.run(
        [sys.executable, "-m", *WHEEL_BUILD, str(wheel_dir), "."],
        cwd=source,
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INDEX": "1"},
    )
    (wheel,) = wheel_dir.glob(WHEEL_GLOB)
    return wheel
