"""Summaries in a process of their own (``summary_process``): the workers relay SummarizeLead to
it; it runs at a lower priority, is replaced if it dies, and stops after the workers.

The summaries themselves (grounding, citations, fallbacks, tenants, errors) are tested through
the relay by every test of ``test_summaries_e2e.py`` (its ``summary-process`` cases)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import psutil
import pytest
from leads_helpers import sample_leads
from test_summaries_e2e import ACME, _keys_file, auth, index_lead, summarize

from gateway import lead_codec
from gateway.summary_process import NOT_ANSWERING
from leadgw_client.pb.leadgw.v1 import lead_service_pb2 as pb
from leadgw_client.pb.leadgw.v1 import lead_service_pb2_grpc as pb_grpc
from tests.conftest import GatewayProcess, start_gateway_process
from tests.fakes.openai_server import FakeOpenAI, StreamReply
from tests.gateway.telemetry.test_otlp_wire import TraceReceiver, serve

pytestmark = pytest.mark.slow

REPLY = "A meeting is booked for next Tuesday to discuss an inheritance [1]."


@pytest.fixture
async def llm() -> AsyncIterator[FakeOpenAI]:
    fake = await FakeOpenAI().start()
    fake.default = StreamReply([REPLY])
    yield fake
    await fake.aclose()


async def _start(tmp_path: Path, llm: FakeOpenAI, **env: str) -> GatewayProcess:
    return await asyncio.to_thread(
        start_gateway_process,
        tmp_path,
        "--keys-file",
        str(_keys_file(tmp_path)),
        "--workers",
        "2",
        env={"LEADGW_LLM_BASE_URL": llm.base_url, "LEADGW_LLM_MODEL": "fake-model", **env},
    )


def _pids(gateway: GatewayProcess) -> tuple[list[int], int]:
    """The workers' pids and the summaries process's, from the ready line."""
    workers = re.search(r"pids ([\d, ]+)\)", gateway.ready_line)
    summaries = re.search(r"summaries process \(pid (\d+)\)", gateway.ready_line)
    assert workers and summaries, gateway.ready_line
    return [int(p) for p in workers[1].split(", ")], int(summaries[1])


async def _llm_called(llm: FakeOpenAI, limit_s: float = 10.0) -> None:
    """Returns once the LLM stand-in has received a chat request (or ``limit_s`` passed)."""
    deadline = time.monotonic() + limit_s
    while not llm.chat_requests and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


async def _summary_once_not(
    stub: pb_grpc.LeadServiceStub, lead_id: str, refused: grpc.StatusCode, limit_s: float
) -> pb.SummaryFinal:
    """The final message of the first summary of ``lead_id`` that is not refused with
    ``refused`` (any other failure fails the test), trying for up to ``limit_s``."""
    deadline = time.monotonic() + limit_s
    while True:
        try:
            return (await summarize(stub, ACME, lead_id))[1]
        except grpc.aio.AioRpcError as error:
            assert error.code() == refused and time.monotonic() < deadline, error
            await asyncio.sleep(0.3)


def _llm_connections(pid: int, llm: FakeOpenAI) -> int:
    return sum(
        1
        for conn in psutil.Process(pid).net_connections(kind="tcp")
        if conn.raddr and conn.raddr.port == llm.port
    )


async def test_summaries_run_in_a_niced_process_the_workers_relay_to(
    tmp_path: Path, llm: FakeOpenAI
) -> None:
    gate = asyncio.Event()
    llm.default = StreamReply([REPLY], gate=gate)
    gateway = await _start(tmp_path, llm)
    try:
        workers, summaries = _pids(gateway)
        assert psutil.Process(summaries).nice() == 19  # genai_nice's default
        assert all(psutil.Process(pid).nice() == 0 for pid in workers)
        (store_host,) = [  # it serves notes and summaries only: as low as the summaries
            child
            for child in psutil.Process(gateway.process.pid).children()
            if child.pid not in {*workers, summaries}
            and "resource_tracker" not in " ".join(child.cmdline())
        ]
        assert store_host.nice() == 19
        assert {t.id for t in store_host.threads()} == {  # every thread of it
            t.id for t in store_host.threads() if os.getpriority(os.PRIO_PROCESS, t.id) == 19
        }
        port = int(gateway.address.rsplit(":", 1)[1])
        assert (
            not [  # it serves the workers only, on its Unix socket
                c
                for c in psutil.Process(summaries).net_connections(kind="tcp")
                if c.laddr.port == port
            ]
        )
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            stub = pb_grpc.LeadServiceStub(channel)
            await index_lead(stub, ACME, "lead-p")
            held = asyncio.ensure_future(summarize(stub, ACME, "lead-p"))
            await _llm_called(llm)
            # The LLM is called by the summaries process, never by a worker.
            assert _llm_connections(summaries, llm) >= 1
            assert all(_llm_connections(pid, llm) == 0 for pid in workers)
            gate.set()
            text, final = await held
        assert final.generator == "fake-model" and not final.fallback
        assert "inheritance [1]" in text
    finally:
        assert await asyncio.to_thread(gateway.stop) == 0
    assert not psutil.pid_exists(summaries) or psutil.Process(summaries).status() == "zombie"


async def test_summary_process_off_runs_summaries_in_the_workers(
    tmp_path: Path, llm: FakeOpenAI
) -> None:
    gateway = await _start(tmp_path, llm, LEADGW_SUMMARY_PROCESS="false")
    try:
        assert "summaries process" not in gateway.ready_line
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            stub = pb_grpc.LeadServiceStub(channel)
            await index_lead(stub, ACME, "lead-w")
            _, final = await summarize(stub, ACME, "lead-w")
        assert final.generator == "fake-model"
    finally:
        await asyncio.to_thread(gateway.stop)


async def test_a_dead_summaries_process_is_unavailable_then_replaced(
    tmp_path: Path, llm: FakeOpenAI
) -> None:
    gateway = await _start(tmp_path, llm)
    try:
        _, summaries = _pids(gateway)
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            stub = pb_grpc.LeadServiceStub(channel)
            await index_lead(stub, ACME, "lead-k")
            os.kill(summaries, signal.SIGKILL)
            await asyncio.to_thread(psutil.Process(summaries).wait, 10)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await summarize(stub, ACME, "lead-k")
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            assert caught.value.details() == NOT_ANSWERING
            leads = pb.ScoreLeadsRequest(leads=[lead_codec.lead_to_pb(x) for x in sample_leads(3)])
            scored = await stub.ScoreLeads(leads, metadata=auth(ACME), timeout=5)
            assert len(scored.scores) == 3  # scoring never depended on it
            final = await _summary_once_not(stub, "lead-k", grpc.StatusCode.UNAVAILABLE, 60)
            assert final.generator == "fake-model"
        assert "the summaries process (pid" in gateway.stderr_text()
        assert "starting another" in gateway.stderr_text()
    finally:
        assert await asyncio.to_thread(gateway.stop) == 0


async def test_stopping_lets_relayed_summaries_finish(tmp_path: Path, llm: FakeOpenAI) -> None:
    gate = asyncio.Event()
    llm.default = StreamReply([REPLY], gate=gate)
    gateway = await _start(tmp_path, llm, LEADGW_GRACE_PERIOD_S="15")
    _, summaries = _pids(gateway)
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub = pb_grpc.LeadServiceStub(channel)
        await index_lead(stub, ACME, "lead-t")
        held = asyncio.ensure_future(summarize(stub, ACME, "lead-t"))
        await _llm_called(llm)
        gateway.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(2.0)  # the workers drain; the summaries process must still serve
        assert psutil.pid_exists(summaries) and psutil.Process(summaries).status() != "zombie"
        gate.set()
        text, final = await held
    assert final.generator == "fake-model" and not final.fallback and "inheritance" in text
    assert await asyncio.to_thread(gateway.process.wait, 30) == 0


async def test_a_client_that_goes_away_ends_its_relayed_summary(
    tmp_path: Path, llm: FakeOpenAI
) -> None:
    """The relay cancels the summaries process's call: the tenant's one summary slot
    (``summaries_per_tenant = 1``) is free again for the next summary."""
    gate = asyncio.Event()
    llm.default = StreamReply([REPLY], gate=gate)
    gateway = await _start(tmp_path, llm, LEADGW_SUMMARIES_PER_TENANT="1")
    try:
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            stub = pb_grpc.LeadServiceStub(channel)
            await index_lead(stub, ACME, "lead-c")
            held = asyncio.ensure_future(summarize(stub, ACME, "lead-c"))
            await _llm_called(llm)
            with pytest.raises(grpc.aio.AioRpcError) as caught:  # the slot is taken
                await summarize(stub, ACME, "lead-c")
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            held.cancel()
            with pytest.raises(asyncio.CancelledError):
                await held
            gate.set()
            final = await _summary_once_not(stub, "lead-c", grpc.StatusCode.RESOURCE_EXHAUSTED, 10)
            assert final.generator == "fake-model"
    finally:
        await asyncio.to_thread(gateway.stop)


async def test_the_summaries_process_continues_the_relayed_calls_trace(
    tmp_path: Path, llm: FakeOpenAI
) -> None:
    """The client's trace → the worker's SummarizeLead span → the summaries process's span of
    the relayed call → the summary's own spans: one trace across the processes."""
    receiver = TraceReceiver()
    collector, port = await serve(receiver)
    otel = {
        "OTEL_SDK_DISABLED": "false",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    trace_id, client_span = os.urandom(16), os.urandom(8)
    traceparent = f"00-{trace_id.hex()}-{client_span.hex()}-01"
    gateway = await _start(tmp_path, llm, **otel)
    try:
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            stub = pb_grpc.LeadServiceStub(channel)
            await index_lead(stub, ACME, "lead-o")
            async for _ in stub.SummarizeLead(
                pb.SummarizeLeadRequest(lead_id="lead-o"),
                metadata=(*auth(ACME), ("traceparent", traceparent)),
                timeout=20,
            ):
                pass
    finally:
        assert await asyncio.to_thread(gateway.stop) == 0  # each process flushes its spans
        await collector.stop(None)
    spans = [
        span
        for request in receiver.requests
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
        if span.trace_id == trace_id
    ]
    method = "leadgw.v1.LeadService/SummarizeLead"
    [worker] = [s for s in spans if s.name == method and s.parent_span_id == client_span]
    [relayed] = [s for s in spans if s.name == method and s.parent_span_id == worker.span_id]
    retrieve = [s for s in spans if s.name == "summary.retrieve"]
    assert retrieve and all(s.parent_span_id == relayed.span_id for s in retrieve)
