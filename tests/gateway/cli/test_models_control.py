"""``leadgw models load|shadow|canary|promote|rollback|unload`` against a running gateway."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from gateway.settings import BUNDLED_MODELS

ROOT = Path(__file__).resolve().parents[3]


def leadgw(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], cwd=ROOT, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


def test_models_control_commands(gateway_process, tmp_path: Path) -> None:
    repository = tmp_path / "models"
    shutil.copytree(BUNDLED_MODELS, repository)
    shutil.copytree(repository / "lead_scorer" / "1", repository / "lead_scorer" / "2")
    config = repository / "lead_scorer" / "config.toml"
    config.write_text(config.read_text() + "\n[version_policy]\nspecific = [1]\n")
    gateway = gateway_process(
        "--model-repository", str(repository), "--model-control-mode", "explicit",
        "--repository-poll-secs", "0.2",
    )  # fmt: skip
    address = ("--address", gateway.address)
    shadow = leadgw("models", "shadow", "--version", "2", *address)
    assert shadow.returncode == 0, shadow.stderr
    assert "applied by every worker" in shadow.stdout
    listing = leadgw("models", *address).stdout
    assert "lead_scorer  v1  READY  live" in listing
    assert "lead_scorer  v2  READY  shadow" in listing
    rate = leadgw("models", "shadow", "--rate", "0.25", *address)
    assert rate.returncode == 0, rate.stderr
    assert "shadow_rate = 0.25" in config.read_text()
    assert "lead_scorer  v2  READY  shadow 0.25" in leadgw("models", *address).stdout
    bad_rate = leadgw("models", "shadow", "--version", "2", "--rate", "1.5", *address)
    assert bad_rate.returncode == 1 and "INVALID_ARGUMENT" in bad_rate.stderr
    assert "shadow_rate" in bad_rate.stderr
    bad = leadgw("models", "canary", "--version", "2", "--weight", "2", *address)
    assert bad.returncode == 1 and "INVALID_ARGUMENT" in bad.stderr and "[0, 1]" in bad.stderr
    assert leadgw("models", "canary", "--version", "2", "--weight", "0.1", *address).returncode == 0
    assert "v2  READY  canary 0.1, shadow 0.25" in leadgw("models", *address).stdout
    assert leadgw("models", "promote", *address).returncode == 0
    assert "lead_scorer  v2  READY  live" in leadgw("models", *address).stdout
    assert leadgw("models", "rollback", *address).returncode == 0
    assert "lead_scorer  v1  READY  live" in leadgw("models", *address).stdout
    missing = leadgw("models", "unload", "--version", "5", *address)
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr
