"""The guides agree with the image and the manifests: docs/deployment.md's `docker run` passes
the gateway's start-up checks, and docs/security.md names every port they open in clear."""

from __future__ import annotations

import re
import shlex
from pathlib import PurePosixPath

from gateway.settings import Settings
from gateway.tls import check_transport
from tests.deploy.dockerfile import read_dockerfile
from tests.deploy.kustomize import render
from tests.deploy.wheel_build import ROOT

GUIDE = ROOT / "docs" / "deployment.md"
SECURITY = ROOT / "docs" / "security.md"


def docker_run() -> list[str]:
    """The words of the guide's one `docker run` command, continuation lines joined."""
    blocks = re.findall(r"```sh\n(.*?)```", GUIDE.read_text(), flags=re.S)
    (command,) = [
        line
        for block in blocks
        for line in block.replace("\\\n", " ").splitlines()
        if line.startswith("docker run ")
    ]
    return shlex.split(command)


def options(words: list[str], flag: str) -> list[str]:
    return [words[i + 1] for i, word in enumerate(words[:-1]) if word == flag]


def test_the_guides_docker_run_passes_the_gateways_start_up_checks() -> None:
    words = docker_run()
    env = read_dockerfile(ROOT / "Dockerfile")[-1].env()
    for option in options(words, "-e"):
        key, _, value = option.partition("=")
        env[key] = value
    leadgw = {
        k.removeprefix("LEADGW_").lower(): v for k, v in env.items() if k.startswith("LEADGW_")
    }
    assert set(leadgw) <= set(Settings.model_fields), set(leadgw) - set(Settings.model_fields)
    settings = Settings(**leadgw)
    # The image binds 0.0.0.0: with a keys file the gateway refuses to start without TLS.
    assert settings.keys_file is not None
    check_transport(settings)
    mounts = [PurePosixPath(option.split(":")[1]) for option in options(words, "-v")]
    for name, value in leadgw.items():
        if name.endswith("_file"):
            path = PurePosixPath(value)
            assert any(path == m or m in path.parents for m in mounts), (
                f"{name}: {path} not mounted"
            )


def test_the_security_guide_names_every_port_the_manifests_open_in_clear() -> None:
    (bullet,) = re.findall(
        r"^- Not encrypted by leadgw:.*?(?=\n\n|\n- )", SECURITY.read_text(), re.S | re.M
    )
    (config_map,) = [r for r in render(ROOT / "deploy" / "base") if r["kind"] == "ConfigMap"]
    config = config_map["data"]
    # Served in plaintext whatever the TLS settings say.
    for setting in ("metrics_port", "health_port"):
        if f"LEADGW_{setting.upper()}" in config:
            assert f"`{setting}`" in bullet, setting
    if config.get("LEADGW_METRICS_HOST", "127.0.0.1") != "127.0.0.1":
        assert "127.0.0.1` only" not in bullet, "the manifests bind metrics_host elsewhere"
