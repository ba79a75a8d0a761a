"""SIGTERM stops the gateway gracefully: requests already in flight all complete."""

from __future__ import annotations

import asyncio
import signal

import grpc
import pytest
from leads_helpers import sample_leads, score_request

from leadgw_client.pb.leadgw.v1 import lead_service_pb2_grpc as pb_grpc

pytestmark = pytest.mark.slow


async def test_sigterm_loses_no_request_in_flight(gateway_process) -> None:
    gateway = gateway_process()
    request = score_request(sample_leads(400, seed=9))
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub = pb_grpc.LeadServiceStub(channel)
        await stub.ScoreLeads(score_request(sample_leads(2)), timeout=30)  # connected and warm
        calls = [asyncio.ensure_future(stub.ScoreLeads(request, timeout=60)) for _ in range(10)]
        # Once one answer is back, the server has read every request of this one connection.
        # (10 x 400 rows stay under the model's 4,096-row queue, so none is refused.)
        await asyncio.wait(calls, return_when=asyncio.FIRST_COMPLETED)
        pending_before_signal = sum(not call.done() for call in calls)
        gateway.process.send_signal(signal.SIGTERM)
        responses = await asyncio.gather(*calls)
    assert pending_before_signal > 0, "nothing was in flight at SIGTERM; make requests bigger"
    assert all(len(r.scores) == 400 for r in responses)
    assert gateway.process.wait(timeout=30) == 0
