"""A hostile LLM provider: one that hangs (reads the request, never answers) and one that floods
(streams without end). Either way every SummarizeLead ends inside the caller's deadline with the
marked fallback, and ScoreLeads keeps succeeding meanwhile: scoring never waits on GenAI."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from load import score_request

from gateway import lead_codec
from leadgw_client.pb.leadgw.v1 import lead_service_pb2 as pb
from leadgw_client.pb.leadgw.v1 import lead_service_pb2_grpc as pb_grpc
from runtimes.training import synth
from tests.conftest import GatewayProcess, start_gateway_process
from tests.fakes.openai_server import FakeOpenAI, Reply, SilentReply, StreamReply

DEADLINE_S = 8.0
SUMMARIES = 4
LEAD = "chaos-llm-lead"


async def _gateway(tmp_path: Path, llm: FakeOpenAI) -> GatewayProcess:
    return await asyncio.to_thread(
        start_gateway_process,
        tmp_path,
        env={"LEADGW_LLM_BASE_URL": llm.base_url, "LEADGW_LLM_MODEL": "fake-model"},
    )


@pytest.fixture
async def llm_and_gateway(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[FakeOpenAI, GatewayProcess]]:
    reply: Reply = request.param
    llm = await FakeOpenAI(default=reply).start()
    gateway = await _gateway(tmp_path, llm)
    try:
        yield llm, gateway
    finally:
        await asyncio.to_thread(gateway.stop)
        await llm.aclose()


HUNG = SilentReply()
# Half a million words, one every 5 ms: longer than any deadline.
FLOODING = StreamReply(["word "] * 500_000, gap_s=0.005)


async def _index_lead(stub: pb_grpc.LeadServiceStub) -> None:
    profile = synth.generate(1, 3).leads(LEAD)[0]
    profile_pb = lead_codec.lead_to_pb(profile)
    profile_pb.lead_id = LEAD
    note = pb.Note(
        note_id=f"{LEAD}-n0",
        lead_id=LEAD,
        kind="call",
        text="Plans to retire in 2027; asked about pensions.",
    )
    response = await stub.IndexNotes(
        pb.IndexNotesRequest(notes=[note], leads=[profile_pb]), timeout=60
    )
    assert response.leads_upserted == 1


async def _summarize(stub: pb_grpc.LeadServiceStub) -> pb.SummaryFinal:
    final = None
    async for message in stub.SummarizeLead(
        pb.SummarizeLeadRequest(lead_id=LEAD), timeout=DEADLINE_S
    ):
        if message.HasField("final"):
            final = message.final
    assert final is not None, "the stream ended without its final message"
    return final


async def _score_until(stub: pb_grpc.LeadServiceStub, done: asyncio.Event) -> int:
    request = score_request(3, seed=1)
    answered = 0
    while not done.is_set():
        response = await stub.ScoreLeads(request, timeout=5)
        assert len(response.scores) == 3
        answered += 1
        await asyncio.sleep(0.01)
    return answered


@pytest.mark.parametrize(
    "llm_and_gateway", [HUNG, FLOODING], ids=["hung", "flooding"], indirect=True
)
async def test_llm_hung_or_flooding_summaries_end_in_deadline_with_fallback_and_scoring_succeeds(
    llm_and_gateway: tuple[FakeOpenAI, GatewayProcess],
) -> None:
    llm, gateway = llm_and_gateway
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub = pb_grpc.LeadServiceStub(channel)
        await _index_lead(stub)
        done = asyncio.Event()
        scoring = asyncio.ensure_future(_score_until(stub, done))
        try:
            finals = await asyncio.gather(*(_summarize(stub) for _ in range(SUMMARIES)))
        finally:
            done.set()
        answered = await scoring
    assert llm.chat_requests, "the gateway never called the LLM"
    for final in finals:
        assert final.fallback and final.fallback_reason, final
        if llm.default is HUNG:
            assert final.generator == "fallback"
        else:
            # The gateway caps the flood whatever the endpoint does, and says so; the guard
            # shows none of the cut-off text (or the deadline cut it first, after partial output).
            assert final.capped in ("max_tokens", "max_chars") or final.fallback_reason.endswith(
                "after partial output"
            ), final
    assert answered > 0
