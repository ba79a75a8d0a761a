"""require_external_store: with it, the gateway refuses the embedded notes store and says to
use a Qdrant server (replicas would otherwise each keep notes the others never see)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from leads_helpers import sample_leads, score_request

from gateway.notes_health import NOTES_HEALTH_NAME
from gateway.server import start
from gateway.settings import Settings
from leadgw_client.pb.leadgw.v1 import lead_service_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_refuses_the_embedded_store(tmp_path: Path, workers: str) -> None:
    env = {
        **os.environ,
        "LEADGW_REQUIRE_EXTERNAL_STORE": "true",
        "LEADGW_DATA_DIR": str(tmp_path / "data"),
    }
    env.pop("LEADGW_QDRANT_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--port", "0", "--workers", workers],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert "leadgw ready" not in done.stdout
    assert "require_external_store" in done.stderr and "LEADGW_QDRANT_URL" in done.stderr
    # Nothing was started: not even the shared embedded store of --workers (data/edge).
    assert not (tmp_path / "data").exists()


async def test_start_refuses_it_too(tmp_path: Path) -> None:
    settings = Settings(port=0, data_dir=tmp_path / "data", require_external_store=True)
    with pytest.raises(ValueError, match="Qdrant server"):
        await start(settings)


def _closed_port() -> int:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        return int(holder.getsockname()[1])


@pytest.mark.filterwarnings("ignore:Failed to obtain server version")
async def test_an_unreachable_qdrant_server_leaves_scoring_serving(tmp_path: Path) -> None:
    # The manifests' store settings with the server down (not up yet, or restarting): the
    # gateway starts with notes off, and the probes' names serve while leadgw.notes does not.
    settings = Settings(
        port=0,
        data_dir=tmp_path / "data",
        qdrant_url=f"http://127.0.0.1:{_closed_port()}",
        require_external_store=True,
        load_demo_corpus=False,
    )
    gateway = await start(settings)
    try:
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for name, wanted in [
                ("", health_pb2.HealthCheckResponse.SERVING),
                ("leadgw.v1.LeadService", health_pb2.HealthCheckResponse.SERVING),
                (NOTES_HEALTH_NAME, health_pb2.HealthCheckResponse.NOT_SERVING),
            ]:
                reply = await health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
                assert reply.status == wanted, name
            stub = pb_grpc.LeadServiceStub(channel)
            reply = await stub.ScoreLeads(score_request(sample_leads(2)), timeout=10)
            assert len(reply.scores) == 2
    finally:
        await gateway.stop(grace=1.0, drain=0)
