"""``leadgw models load|shadow|canary|promote|rollback|unload`` against a running gateway."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.auth import hash_key
from gateway.cli import build_parser
from gateway.cli.connection import DEFAULT_ADDRESS
from gateway.settings import BUNDLED_MODELS
from tests.gateway.tls_certs import TestCA

ROOT = Path(__file__).resolve().parents[3]


def leadgw(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], cwd=ROOT, capture_output=True, text=True,
        timeout=120, env=env,
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


def explicit_copy(tmp_path: Path) -> tuple[str, ...]:
    """Serve options: explicit control over a copy of the bundled repository (a control RPC
    writes its [routing] table into the repository's config.toml)."""
    repository = tmp_path / "models"
    shutil.copytree(BUNDLED_MODELS, repository)
    return ("--model-repository", str(repository), "--model-control-mode", "explicit")


def test_control_commands_speak_tls(gateway_process, tmp_path: Path) -> None:
    # docs/security.md: the client commands, `models` among them, connect over TLS with --ca.
    ca = TestCA()
    cert, key = ca.server().write(tmp_path / "tls", "server")
    gateway = gateway_process(
        "--tls-cert-file", str(cert), "--tls-key-file", str(key), *explicit_copy(tmp_path)
    )  # fmt: skip
    ca_file = ca.write(tmp_path / "tls" / "ca.pem")
    loaded = leadgw("models", "load", "--address", gateway.address, "--ca", str(ca_file))
    assert loaded.returncode == 0, loaded.stderr
    assert "applied by every worker" in loaded.stdout


def test_connection_options_before_the_action_hold_for_it(gateway_process, tmp_path: Path) -> None:
    # `leadgw models --help` lists --api-key, --timeout, ... beside the actions: given there,
    # they hold for the action as they do when given after it.
    keys = tmp_path / "keys.toml"
    keys.write_text(
        f'[[keys]]\ntenant = "ops"\nscopes = ["admin"]\nsha256 = "{hash_key("lgw_admin")}"\n'
    )
    gateway = gateway_process("--keys-file", str(keys), *explicit_copy(tmp_path))
    env = {k: v for k, v in os.environ.items() if k != "LEADGW_API_KEY"}
    loaded = leadgw(
        "models", "--api-key", "lgw_admin", "--timeout", "30", "load", "--address", gateway.address,
        env=env,
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr
    assert "applied by every worker" in loaded.stdout


@pytest.mark.parametrize(
    ("argv", "address", "timeout", "tls"),
    [
        (["models"], DEFAULT_ADDRESS, None, False),
        (["models", "promote"], DEFAULT_ADDRESS, None, False),
        (["models", "--address", "gw:1", "--tls", "--timeout", "5", "promote"], "gw:1", 5.0, True),
        (["models", "promote", "--address", "gw:2", "--tls"], "gw:2", None, True),
        (["models", "--address", "gw:1", "promote", "--address", "gw:2"], "gw:2", None, False),
    ],
)
def test_connection_options_are_read_on_either_side_of_the_action(
    argv: list[str], address: str, timeout: float | None, tls: bool
) -> None:
    args = build_parser("models").parse_args(argv)
    assert (args.address, args.timeout, args.tls) == (address, timeout, tls)
