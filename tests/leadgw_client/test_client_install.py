"""The client installs on its own from ``leadgw_client/`` and scores against a real gateway,
with the stubs and .proto sources inside, and without any of the server's dependencies."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVER_ONLY = ("onnxruntime", "qdrant", "openai", "numpy", "opentelemetry", "pydantic")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("client-wheel")
    source = work / "source"
    shutil.copytree(
        ROOT / "leadgw_client", source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(work / "wheels"), "."],
        cwd=source, check=True, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INDEX": "1"},
    )  # fmt: skip
    (built,) = (work / "wheels").glob("leadgw_client-*.whl")
    return built


def test_the_wheel_carries_stubs_and_protos_and_no_server_dependency(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        requires = [
            line.split(":", 1)[1].strip()
            for line in archive.read(metadata).decode().splitlines()
            if line.startswith("Requires-Dist:")
        ]
    assert "leadgw_client/client.py" in names
    assert "leadgw_client/pb/leadgw/v1/lead_service_pb2_grpc.py" in names
    assert "leadgw_client/pb/inference/grpc_service_pb2.py" in names
    assert "leadgw_client/pb/protos/leadgw/v1/lead_service.proto" in names
    assert "leadgw_client/pb/protos/inference/grpc_service.proto" in names
    assert not [n for n in names if n.startswith(("gateway/", "runtimes/", "retrieval/"))]
    assert {r.split(">")[0].split("<")[0].split("=")[0].strip() for r in requires} == {
        "grpcio",
        "protobuf",
        "googleapis-common-protos",
    }


def test_the_installed_client_scores_against_the_gateway(
    wheel: Path, tmp_path: Path, shared_gateway
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    # This environment's packages as a plain path entry (grpcio, protobuf); its editable
    # install's hooks stay inactive, so only the wheel's copy of leadgw_client is importable.
    (Path(purelib) / "test-environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
         "--no-index", "--quiet", str(wheel)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    script = (
        "import sys, leadgw_client\n"
        "from leadgw_client import LeadClient\n"
        "with LeadClient(sys.argv[1]) as client:\n"
        "    (score,) = client.score({'c-1': {'age': 61.0, 'channel': 'referral'}})\n"
        "print(leadgw_client.__file__)\n"
        "print(score.lead_id, score.model_name, score.model_version, score.band)\n"
        "print(sorted({m.partition('.')[0] for m in sys.modules}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "LEADGW_"))}
    done = subprocess.run(
        [str(python), "-c", script, shared_gateway.address],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    where, answer, modules = done.stdout.strip().splitlines()
    assert where.startswith(str(venv))
    assert answer.split()[:3] == ["c-1", "lead_scorer", "1"]
    assert not [m for m in SERVER_ONLY if f"'{m}'" in modules]
