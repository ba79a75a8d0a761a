"""max_concurrent_streams: calls one connection may have in flight at once. A call over the cap
waits in the client for a free stream (and one that races a stream's end is refused with
UNAVAILABLE, as the tenant-flood bench showed): why there is no cap by default
(docs/perf/2026-11-28-flood-floor.md)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.server import start
from gateway.settings import Settings


@pytest.mark.parametrize(("cap", "second_call"), [(1, "DEADLINE_EXCEEDED"), (None, "SERVING")])
async def test_a_connection_has_at_most_the_cap_in_flight(
    tmp_path: Path, cap: int | None, second_call: str
) -> None:
    settings = Settings(
        port=0, data_dir=tmp_path / "data", load_demo_corpus=False, max_concurrent_streams=cap
    )
    gateway = await start(settings)
    try:
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            # A call that stays in flight: the health watch, once it has sent its first status.
            watch = stub.Watch(health_pb2.HealthCheckRequest(service=""))
            first = await watch.read()
            assert first.status == health_pb2.HealthCheckResponse.SERVING
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                outcome = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            except grpc.aio.AioRpcError as exc:
                outcome = exc.code().name
            watch.cancel()
            assert outcome == second_call
            # The stream given back, the next call has one.
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await gateway.stop(grace=1.0, drain=0)
