"""max_connection_age_s: the server ends each client connection after about that long, so the
client reconnects (and, over a headless service, re-resolves and re-balances)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from leads_helpers import sample_leads, score_request

from gateway.server import start
from gateway.settings import Settings
from leadgw_client.pb.leadgw.v1 import lead_service_pb2_grpc as pb_grpc

READY = grpc.ChannelConnectivity.READY


async def _left_ready(channel: grpc.aio.Channel, within_s: float) -> bool:
    """Whether the channel's connection stops being READY within ``within_s``."""
    try:
        async with asyncio.timeout(within_s):
            while channel.get_state() == READY:
                await channel.wait_for_state_change(READY)
    except TimeoutError:
        return False
    return True


@pytest.mark.parametrize(("age_s", "closes"), [(0.3, True), (None, False)])
async def test_connections_are_closed_after_the_max_age(
    tmp_path: Path, age_s: float | None, closes: bool
) -> None:
    settings = Settings(
        port=0,
        data_dir=tmp_path / "data",
        load_demo_corpus=False,
        max_connection_age_s=age_s,
        max_connection_age_grace_s=1.0,
        summary_deadline_s=1.0,  # a grace shorter than the longest summary is refused
    )
    gateway = await start(settings)
    try:
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            stub = pb_grpc.LeadServiceStub(channel)
            await stub.ScoreLeads(score_request(sample_leads(2)), timeout=10)
            assert channel.get_state() == READY
            # Ten times the age (jittered by gRPC by up to 10 %) is ample for the GOAWAY.
            assert await _left_ready(channel, within_s=3.0) is closes
            # Either way the next call succeeds: the client reconnects on its own.
            reply = await stub.ScoreLeads(score_request(sample_leads(2)), timeout=10)
            assert len(reply.scores) == 2
    finally:
        await gateway.stop(grace=1.0, drain=0)
