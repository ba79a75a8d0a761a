"""`pip install` of the wheel (not editable), run from another folder, serves the bundled model.

No network: the wheel is built without an isolated build environment and installed
``--no-deps`` into a fresh virtual environment that sees this environment's dependencies
through a .pth file (a plain path entry: the editable install's own .pth hooks stay inactive,
so only the wheel's copy of leadgw can be imported).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from leadgw_client.pb.leadgw.v1 import lead_service_pb2 as pb
from leadgw_client.pb.leadgw.v1 import lead_service_pb2_grpc
from tests.deploy.wheel_build import build_wheel
from tests.gateway.leads_helpers import sample_leads, score_request

READY = re.compile(r"listening on (?P<host>[\d.]+):(?P<port>\d+)")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with only the leadgw wheel installed in it; returns its bin folder."""
    root = tmp_path_factory.mktemp("install")
    wheel = build_wheel(root)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site_packages = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    (Path(site_packages) / "test-environment.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n"
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
         "--no-index", "--disable-pip-version-check", "--quiet", str(wheel)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return venv / "bin"


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEADGW_", "PYTHON"))}
    return {**env, **extra}


def test_the_installed_package_is_the_wheels_copy(installed: Path, tmp_path: Path) -> None:
    found = subprocess.run(
        [str(installed / "python"), "-c",
         "import gateway.settings as s; print(s.__file__); print(s.BUNDLED_MODELS)"],
        cwd=tmp_path, env=_clean_env(), check=True, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    venv = installed.parent.resolve()
    module, models = (Path(line).resolve() for line in found)
    assert module.is_relative_to(venv), module
    assert models.is_relative_to(venv)
    assert (models / "lead_scorer" / "config.toml").is_file()
    assert [p.name for p in (models / "lead_scorer" / "1").glob("*.onnx")] == ["model.onnx"]


@pytest.fixture
def served(installed: Path, tmp_path: Path) -> Iterator[str]:
    """``leadgw serve`` of the installed package, started in an empty folder on port 0."""
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    process = subprocess.Popen(
        [str(installed / "leadgw"), "serve", "--port", "0", "--workers", "1"],
        cwd=workdir,
        # The demo corpus on: the installed embedder, tokenizer and notes store must work too.
        env=_clean_env(LEADGW_LOAD_DEMO_CORPUS="true", PYTHONUNBUFFERED="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    try:
        deadline = time.monotonic() + 120
        address = None
        while address is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                raise AssertionError(f"leadgw serve exited: {process.communicate()[1]}")
            if match := READY.search(line):
                address = f"{match['host']}:{match['port']}"
        assert address, "no ready line"
        yield address
    finally:
        process.terminate()
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
    assert process.returncode == 0
    # Its data directory is the working folder's, not the source tree's.
    assert (workdir / ".leadgw").is_dir()


def test_the_installed_gateway_scores_with_the_bundled_model(served: str) -> None:
    leads = sample_leads(3)
    with grpc.insecure_channel(served) as channel:
        reply: pb.ScoreLeadsResponse = lead_service_pb2_grpc.LeadServiceStub(channel).ScoreLeads(
            score_request(leads), timeout=30
        )
    assert [s.lead_id for s in reply.scores] == [lead.lead_id for lead in leads]
    assert {(s.model_name, s.model_version) for s in reply.scores} == {("lead_scorer", "1")}
    assert all(0.0 < s.probability < 1.0 for s in reply.scores)


def test_the_installed_gateway_searches_notes_and_summarizes(served: str) -> None:
    with grpc.insecure_channel(served) as channel:
        stub = lead_service_pb2_grpc.LeadServiceStub(channel)
        hits = stub.SearchNotes(
            pb.SearchNotesRequest(query="retirement income", top_k=3), timeout=60
        ).hits
        final = None
        text = []
        for message in stub.SummarizeLead(pb.SummarizeLeadRequest(lead_id="demo-0001"), timeout=60):
            if message.WhichOneof("event") == "text":
                text.append(message.text)
            else:
                final = message.final
    # The demo corpus: lead notes (demo-NNNN) and firm documents (doc-...), found by meaning.
    assert hits and all(h.lead_id.startswith("demo-") or h.note_id.startswith("doc-") for h in hits)
    assert final is not None and "".join(text)
    # No LLM is configured: the marked fallback, with citations to the demo lead's own notes.
    assert final.fallback and final.fallback_reason == "not_configured"
    assert final.citations
