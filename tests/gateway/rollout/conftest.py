"""Model repositories for the rollout tests: the bundled version 1, and a version 2 retrained
with another seed (so its scores differ and each answer can be traced to its version)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.settings import BUNDLED_MODELS

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def retrained_v2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A version folder (model.onnx, its config.toml) trained with seed 7 on few rows."""
    repository = tmp_path_factory.mktemp("retrained")
    shutil.copytree(BUNDLED_MODELS / "lead_scorer", repository / "lead_scorer")
    subprocess.run(
        [sys.executable, "-m", "gateway", "train", "--repository", str(repository),
         "--version", "2", "--rows", "6000", "--seed", "7", "--quiet"],
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    return repository / "lead_scorer" / "2"


@pytest.fixture
def repository_v1(tmp_path: Path) -> Path:
    """A repository holding only the bundled lead_scorer version 1."""
    root = tmp_path / "models"
    shutil.copytree(BUNDLED_MODELS, root)
    return root


@pytest.fixture
def two_version_gateway(gateway_process, repository_v1: Path, retrained_v2: Path):
    """Explicit mode, version 1 live; version 2 (another seed, same schema) on disk, not loaded."""
    model = repository_v1 / "lead_scorer"
    shutil.copytree(retrained_v2, model / "2")
    config = model / "config.toml"
    config.write_text(config.read_text() + "\n[version_policy]\nspecific = [1]\n")
    return gateway_process(
        "--model-repository", str(repository_v1), "--metrics-port", "0",
        "--model-control-mode", "explicit", "--repository-poll-secs", "0.2",
    )  # fmt: skip
