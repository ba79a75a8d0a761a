"""The gateway adds every method it serves as a generic handler, never as a gRPC "registered
method": grpc.aio's accept loop waits, on every call, over one pending task per registered method
(docs/perf/2026-11-29-pass4.md). The server is the real one, started in this process, and every
kind of service still answers a real client: the API (wrapped), health and reflection (plain),
and the plaintext health port.
"""

from __future__ import annotations

import re
from pathlib import Path

import grpc
import pytest
from grpc.aio._server import Server as AioServer
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from leads_helpers import sample_leads, score_request

from gateway.server import start
from gateway.settings import Settings
from leadgw_client.pb.inference import grpc_service_pb2 as oip
from leadgw_client.pb.inference import grpc_service_pb2_grpc as oip_grpc
from leadgw_client.pb.leadgw.v1 import lead_service_pb2_grpc as pb_grpc

pytestmark = pytest.mark.timeout(60)


async def test_no_method_is_registered_and_every_service_answers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registered: list[str] = []
    original = AioServer.add_registered_method_handlers

    def recording(self, service: str, handlers) -> None:
        registered.append(service)
        original(self, service, handlers)

    monkeypatch.setattr(AioServer, "add_registered_method_handlers", recording)
    caplog.set_level("INFO", logger="gateway.server")
    gateway = await start(
        Settings(port=0, health_port=0, data_dir=tmp_path, load_demo_corpus=False)
    )
    try:
        assert registered == []  # every server the gateway starts, the health port's included
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
            scores = await pb_grpc.LeadServiceStub(channel).ScoreLeads(
                score_request(sample_leads(3, seed=7))
            )
            assert len(scores.scores) == 3
            live = await oip_grpc.GRPCInferenceServiceStub(channel).ServerLive(
                oip.ServerLiveRequest()
            )
            assert live.live
            check = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="leadgw.v1.LeadService")
            )
            assert check.status == health_pb2.HealthCheckResponse.SERVING
            reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
            replies = reflection.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")])
            )
            names = {s.name async for r in replies for s in r.list_services_response.service}
            assert {"leadgw.v1.LeadService", "inference.GRPCInferenceService"} <= names
        bound = re.search(r"health service in plaintext on [^\s:]+:(\d+)", caplog.text)
        assert bound, caplog.text
        async with grpc.aio.insecure_channel(f"127.0.0.1:{bound[1]}") as plaintext:
            check = await health_pb2_grpc.HealthStub(plaintext).Check(
                health_pb2.HealthCheckRequest()
            )
            assert check.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await gateway.stop(grace=1, drain=0)
