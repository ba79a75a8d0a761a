"""Notes and summaries end to end: the real server (embedded Qdrant, ONNX embedder), generated
stubs, and an OpenAI-protocol server on loopback standing in for the LLM provider."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from leads_helpers import sample_leads

from gateway import lead_codec
from gateway.auth import hash_key
from leadgw_client.pb.leadgw.v1 import lead_service_pb2 as pb
from leadgw_client.pb.leadgw.v1 import lead_service_pb2_grpc as pb_grpc
from tests.conftest import GatewayProcess, start_gateway_process
from tests.fakes.openai_server import ErrorReply, FakeOpenAI, StreamReply

ACME = "acme-key-with-every-scope"
BETA = "beta-key-with-every-scope"
SCORE_ONLY = "acme-key-score-only"


def _keys_file(folder: Path) -> Path:
    keys = folder / "keys.toml"
    every = '["score", "summarize", "index"]'
    keys.write_text(
        f'[[keys]]\ntenant = "acme"\nscopes = {every}\nsha256 = "{hash_key(ACME)}"\n'
        f'[[keys]]\ntenant = "beta"\nscopes = {every}\nsha256 = "{hash_key(BETA)}"\n'
        f'[[keys]]\ntenant = "acme"\nscopes = ["score"]\nsha256 = "{hash_key(SCORE_ONLY)}"\n'
    )
    return keys


def auth(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


@pytest.fixture
async def llm() -> AsyncIterator[FakeOpenAI]:
    fake = await FakeOpenAI().start()
    yield fake
    await fake.aclose()


@pytest.fixture(params=["1", "2"], ids=["one-process", "summary-process"])
async def gateway(
    llm: FakeOpenAI, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[GatewayProcess]:
    """One process; or two workers relaying every summary to the summaries process
    (``summary_process``): each test here runs through both."""
    process = await asyncio.to_thread(
        start_gateway_process,
        tmp_path,
        "--keys-file",
        str(_keys_file(tmp_path)),
        env={
            "LEADGW_LLM_BASE_URL": llm.base_url,
            "LEADGW_LLM_MODEL": "fake-model",
            "LEADGW_WORKERS": request.param,
        },
    )
    if request.param != "1":
        assert "and a summaries process (pid " in process.ready_line
    yield process
    await asyncio.to_thread(process.stop)


def notes_for(lead_id: str) -> list[pb.Note]:
    texts = [
        ("call", "Call with the client: plans to retire in 2027 and wants to review pensions."),
        ("email", "Emailed the retirement planning guide; client asked about consolidating 401ks."),
        ("meeting", "Meeting booked for next Tuesday to discuss an inheritance from a parent."),
    ]
    notes = []
    for i, (kind, text) in enumerate(texts):
        note = pb.Note(note_id=f"{lead_id}-n{i}", lead_id=lead_id, kind=kind, text=text)
        note.created_at.FromSeconds(1_760_000_000 + i * 86_400)
        notes.append(note)
    return notes


async def index_lead(
    stub: pb_grpc.LeadServiceStub, key: str, lead_id: str
) -> pb.IndexNotesResponse:
    profile = lead_codec.lead_to_pb(sample_leads(1, seed=31)[0])
    profile.lead_id = lead_id
    return await stub.IndexNotes(
        pb.IndexNotesRequest(notes=notes_for(lead_id), leads=[profile]), metadata=auth(key)
    )


async def summarize(
    stub, key: str, lead_id: str, timeout: float = 20
) -> tuple[str, pb.SummaryFinal]:
    text, final = [], None
    async for message in stub.SummarizeLead(
        pb.SummarizeLeadRequest(lead_id=lead_id), metadata=auth(key), timeout=timeout
    ):
        if message.WhichOneof("event") == "text":
            assert final is None, "text after the final message"
            text.append(message.text)
        else:
            final = message.final
    assert final is not None, "the stream must end with a final message"
    return "".join(text), final


async def test_summary_streams_grounded_and_cited(gateway: GatewayProcess, llm: FakeOpenAI) -> None:
    # Notes come newest first: [1] the meeting, [2] the email, [3] the call.
    good = [
        "The client plans to retire in 2027 and wants to review pensions [3].",
        "A meeting is booked for next Tuesday to discuss an inheritance from a parent [1].",
    ]
    bad = [
        "The client's fee is a flat rate of $4.98 per month [2].",  # invented number
        "Conversion score: 85% (hot) [1].",  # restates a score the gateway did not give
        "See [9].",  # no valid citation left
    ]
    reply = " ".join([good[0], bad[0], good[1], bad[1], bad[2]])
    llm.script(StreamReply([reply[i : i + 11] for i in range(0, len(reply), 11)]))
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub = pb_grpc.LeadServiceStub(channel)
        indexed = await index_lead(stub, ACME, "lead-a")
        assert indexed.added == 3 and indexed.leads_upserted == 1
        text, final = await summarize(stub, ACME, "lead-a")
    facts, model_text = text.split("\n\n", 1)
    assert facts.startswith("Conversion score: ")  # rendered by the gateway, not the model
    assert model_text == " ".join(good)
    assert final.generator == "fake-model" and not final.fallback
    assert final.sentences_shown == 2 and final.sentences_dropped == 3
    assert dict(final.dropped_by_reason) == {"unsupported_number": 2, "no_citation": 1}
    assert final.removed_citations == 1 and final.capped == ""
    cited = {c.note_id for c in final.citations}
    assert cited == {"lead-a-n0", "lead-a-n2"}
    assert final.score.lead_id == "lead-a" and 0 < final.score.probability < 1
    assert final.completion_tokens > 0 and final.latency.total_ms > 0
    assert final.latency.first_shown_ms > 0
    prompt = llm.chat_requests[-1].prompt_text
    assert "retire in 2027" in prompt  # grounded in the lead's own notes


async def summarize_through_own_gateway(
    tmp_path: Path, reply: StreamReply, lead_id: str, env: dict[str, str]
) -> tuple[str, pb.SummaryFinal]:
    """One summary of ``lead_id`` (indexed first, client deadline 30 s) from a gateway of its
    own, started with ``env`` and an LLM stand-in that answers ``reply``."""
    fake = await FakeOpenAI().start()
    fake.default = reply
    process = await asyncio.to_thread(
        start_gateway_process,
        tmp_path,
        "--keys-file",
        str(_keys_file(tmp_path)),
        env={"LEADGW_LLM_BASE_URL": fake.base_url, "LEADGW_LLM_MODEL": "fake-model", **env},
    )
    try:
        async with grpc.aio.insecure_channel(process.address) as channel:
            stub = pb_grpc.LeadServiceStub(channel)
            await index_lead(stub, ACME, lead_id)
            return await summarize(stub, ACME, lead_id, timeout=30)
    finally:
        await asyncio.to_thread(process.stop)
        await fake.aclose()


async def test_a_flooding_llm_is_capped_by_the_gateway(tmp_path: Path) -> None:
    # An endpoint that ignores max_tokens: 2,000,000 characters.
    reply = StreamReply(["The client plans to retire in 2027 [3]. " + "x" * 9960] * 200)
    text, final = await summarize_through_own_gateway(
        tmp_path,
        reply,
        "lead-c",
        {"LEADGW_SUMMARY_MAX_CHARS": "2000", "LEADGW_LLM_MAX_TOKENS": "100000"},
    )
    assert final.capped == "max_chars"
    assert len(text) < 2000 + 2000  # the cap, plus the gateway's own facts and fallback
    assert "xxxxxxxxxx" not in text


async def test_llm_failure_gives_marked_fallback(gateway: GatewayProcess, llm: FakeOpenAI) -> None:
    llm.default = ErrorReply(500)
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub = pb_grpc.LeadServiceStub(channel)
        await index_lead(stub, ACME, "lead-f")
        text, final = await summarize(stub, ACME, "lead-f", timeout=10)
    assert final.fallback and final.generator == "fallback"
    assert final.fallback_reason
    assert text.strip()
    assert all(c.note_id.startswith("lead-f-") for c in final.citations)


async def test_summary_deadline_caps_a_longer_client_deadline(tmp_path: Path) -> None:
    """A client's 30 s deadline does not stretch a summary past summary_deadline_s: it ends with
    the marked fallback (on a multi-worker gateway a longer one was cut with UNAVAILABLE)."""
    reply = StreamReply(["The client plans to retire in 2027 [3]."], first_delay_s=8.0)
    text, final = await summarize_through_own_gateway(
        tmp_path, reply, "lead-d", {"LEADGW_SUMMARY_DEADLINE_S": "2"}
    )
    assert final.fallback and final.generator == "fallback"
    assert "retire in 2027 [3]" not in text  # the LLM's late answer never made it


async def test_tenants_are_walls(gateway: GatewayProcess, llm: FakeOpenAI) -> None:
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub = pb_grpc.LeadServiceStub(channel)
        await index_lead(stub, ACME, "lead-secret")
        found = await stub.SearchNotes(
            pb.SearchNotesRequest(query="retire pensions"), metadata=auth(ACME)
        )
        assert {h.note_id for h in found.hits} >= {"lead-secret-n0"}
        for call in (
            stub.SummarizeLead(pb.SummarizeLeadRequest(lead_id="lead-secret"), metadata=auth(BETA)),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                async for _ in call:
                    pass
            assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.SearchNotes(
                pb.SearchNotesRequest(query="retire", lead_id="lead-secret"), metadata=auth(BETA)
            )
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        beta_view = await stub.SearchNotes(
            pb.SearchNotesRequest(query="retire"), metadata=auth(BETA)
        )
        assert not any(h.note_id.startswith("lead-secret") for h in beta_view.hits)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.DeleteNotes(
                pb.DeleteNotesRequest(lead_id="lead-secret"), metadata=auth(BETA)
            )
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        still = await stub.SearchNotes(
            pb.SearchNotesRequest(query="retire", lead_id="lead-secret"), metadata=auth(ACME)
        )
        assert len(still.hits) == 3
    assert not llm.chat_requests, "nothing was sent to the LLM for another tenant's lead"


async def test_scopes_and_bad_input(gateway: GatewayProcess) -> None:
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub = pb_grpc.LeadServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await index_lead(stub, SCORE_ONLY, "lead-x")
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        bad = pb.IndexNotesRequest(
            notes=[
                pb.Note(note_id="ok-1", lead_id="lead-m", kind="call", text="Good note."),
                pb.Note(note_id="bad-1", lead_id="lead-m", kind="call", text="   "),
                pb.Note(note_id="bad-2", lead_id="lead-m", kind="telegram", text="Hi"),
            ]
        )
        mixed = await stub.IndexNotes(bad, metadata=auth(ACME))
        assert (mixed.added, mixed.rejected) == (1, 2)
        errors = {r.note_id: r.error for r in mixed.results if r.error}
        assert set(errors) == {"bad-1", "bad-2"} and "telegram" in errors["bad-2"]
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.SearchNotes(pb.SearchNotesRequest(query="x", top_k=500), metadata=auth(ACME))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in stub.SummarizeLead(
                pb.SummarizeLeadRequest(lead_id="nobody"), metadata=auth(ACME)
            ):
                pass
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_scoring_unaffected_while_summaries_stream(
    gateway: GatewayProcess, llm: FakeOpenAI
) -> None:
    gate = asyncio.Event()
    llm.default = StreamReply(
        ["A meeting is booked for next Tuesday to discuss an inheritance [1]."], gate=gate
    )
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub = pb_grpc.LeadServiceStub(channel)
        await index_lead(stub, ACME, "lead-s")
        streams = [asyncio.ensure_future(summarize(stub, ACME, "lead-s")) for _ in range(3)]
        await asyncio.sleep(0.3)
        request = pb.ScoreLeadsRequest(leads=[lead_codec.lead_to_pb(x) for x in sample_leads(5)])
        scored = await stub.ScoreLeads(request, metadata=auth(ACME), timeout=5)
        assert len(scored.scores) == 5
        assert not any(s.done() for s in streams), "summaries were held open by the LLM"
        gate.set()
        finals = [final for _, final in await asyncio.gather(*streams)]
    assert all(f.generator == "fake-model" for f in finals)


async def test_demo_corpus_is_loaded_on_first_start(tmp_path: Path) -> None:
    gateway = await asyncio.to_thread(
        start_gateway_process, tmp_path, env={"LEADGW_LOAD_DEMO_CORPUS": "true"}
    )
    try:
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            stub = pb_grpc.LeadServiceStub(channel)
            hits = await stub.SearchNotes(
                pb.SearchNotesRequest(query="retirement", lead_id="demo-0001", top_k=3)
            )
            assert hits.hits and all(h.lead_id == "demo-0001" for h in hits.hits)
            text, final = await summarize(stub, "", "demo-0001")
            assert final.fallback and final.generator == "fallback"  # no LLM configured
            assert final.fallback_reason == "not_configured"
            assert final.citations and text
        done = await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                "-m",
                "gateway",
                "summarize",
                "demo-0001",
                "--address",
                gateway.address,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert done.returncode == 0, done.stderr
        assert "written by fallback: not_configured" in done.stdout
        assert re.search(r"^\[1\] \S+ \(\d{4}-\d\d-\d\d\)$", done.stdout, re.MULTILINE)
        missing = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "gateway", "summarize", "nobody", "--address", gateway.address],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr
    finally:
        await asyncio.to_thread(gateway.stop)
