"""The span trees an engineer opens when a score is slow or a summary is wrong, from the real
gateway (started in this process so the in-memory exporter sees its spans)."""

from __future__ import annotations

import shutil
from pathlib import Path

import grpc
import pytest
from leads_helpers import sample_leads, score_request
from opentelemetry import trace

from gateway.server import start
from gateway.settings import BUNDLED_MODELS, Settings
from leadgw_client.pb.leadgw.v1 import lead_service_pb2 as pb
from leadgw_client.pb.leadgw.v1 import lead_service_pb2_grpc as pb_grpc
from tests.gateway.telemetry.telemetry_helpers import SpanRecorder, held_burst

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


async def test_full_detail_span_tree_continues_the_callers_trace(
    spans: SpanRecorder, tmp_path: Path
) -> None:
    settings = Settings(port=0, data_dir=tmp_path, load_demo_corpus=False, trace_detail="full")
    gateway = await start(settings)
    try:
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            stub = pb_grpc.LeadServiceStub(channel)
            await stub.ScoreLeads(
                score_request(sample_leads(4)),
                metadata=(("traceparent", f"00-{TRACE_ID}-{PARENT}-01"),),
            )
        server = (await spans.wait_for("leadgw.v1.LeadService/ScoreLeads"))[0]
        assert server.kind == trace.SpanKind.SERVER
        assert format(server.context.trace_id, "032x") == TRACE_ID
        assert format(server.parent.span_id, "016x") == PARENT
        assert server.attributes["rpc.grpc.status_code"] == 0
        assert server.attributes["leadgw.batch.size"] == 4
        assert "leadgw.batch.queue_wait_ms" in server.attributes
        encode = spans.named("encode features")
        assert encode.parent.span_id == server.context.span_id
        batch = spans.named("batch lead_scorer/1")
        assert batch.context.trace_id == server.context.trace_id
        assert any(link.context.span_id == server.context.span_id for link in batch.links)

    finally:
        await gateway.stop(grace=1, drain=0)


@pytest.mark.parametrize("detail", ["lean", "full"])
async def test_a_request_that_runs_at_once_has_no_queue_wait_span(
    spans: SpanRecorder, tmp_path: Path, detail: str
) -> None:
    """Once a batch of its size has been timed, a request that finds the batcher idle runs at
    once: its (microseconds of) queue wait is an attribute, and no span pretends it waited. The
    inline threshold is raised so that a slow first run on a busy machine cannot decide it; the
    slow-stage threshold too, so that a busy machine cannot add lean spans."""
    repository = repository_with(tmp_path, ("inline_run_us = 250", "inline_run_us = 10000000"))
    settings = Settings(
        port=0,
        data_dir=tmp_path,
        load_demo_corpus=False,
        model_repository=repository,
        trace_detail=detail,
        trace_slow_ms=1e6,
    )
    gateway = await start(settings)
    try:
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            stub = pb_grpc.LeadServiceStub(channel)
            await stub.ScoreLeads(score_request(sample_leads(4)))  # untimed: it queues
            assert len(await spans.wait_for("queue wait")) == 1
            spans.clear()
            await stub.ScoreLeads(score_request(sample_leads(4)))
        again = (await spans.wait_for("leadgw.v1.LeadService/ScoreLeads"))[0]
        assert "leadgw.batch.queue_wait_ms" in again.attributes
        assert again.attributes["leadgw.batch.size"] == 4
        names = sorted(s.name for s in spans.finished())
        if detail == "full":
            assert spans.named("encode features").parent.span_id == again.context.span_id
            assert names == sorted(
                ["batch lead_scorer/1", "encode features", "leadgw.v1.LeadService/ScoreLeads"]
            )
        else:
            # Lean: nothing queued, batched or slow, so the server span is the whole trace.
            assert names == ["leadgw.v1.LeadService/ScoreLeads"]
            assert again.links == ()
    finally:
        await gateway.stop(grace=1, drain=0)


async def test_lean_detail_gives_slow_stages_their_spans(
    spans: SpanRecorder, tmp_path: Path
) -> None:
    """With a slow-stage threshold of 0 every stage counts as slow: encoding and the batch run
    get spans recorded after the fact, nested and linked as the full tree's are, with the real
    start and end inside the server span."""
    repository = repository_with(tmp_path, ("inline_run_us = 250", "inline_run_us = 10000000"))
    settings = Settings(
        port=0,
        data_dir=tmp_path,
        load_demo_corpus=False,
        model_repository=repository,
        trace_slow_ms=0,
    )
    gateway = await start(settings)
    try:
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            stub = pb_grpc.LeadServiceStub(channel)
            await stub.ScoreLeads(
                score_request(sample_leads(4)),
                metadata=(("traceparent", f"00-{TRACE_ID}-{PARENT}-01"),),
            )
        server = (await spans.wait_for("leadgw.v1.LeadService/ScoreLeads"))[0]
        encode = spans.named("encode features")
        batch = spans.named("batch lead_scorer/1")
        assert encode.parent.span_id == server.context.span_id
        assert encode.attributes["leadgw.leads"] == 4
        assert batch.parent.span_id == server.context.span_id
        assert batch.context.trace_id == server.context.trace_id
        assert batch.attributes["leadgw.batch.id"] == int(server.attributes["leadgw.batch.id"])
        assert any(link.context.span_id == server.context.span_id for link in batch.links)
        assert any(link.context.span_id == batch.context.span_id for link in server.links)
        for stage in (encode, batch):
            assert server.start_time <= stage.start_time <= stage.end_time <= server.end_time
        assert encode.end_time <= batch.start_time
    finally:
        await gateway.stop(grace=1, drain=0)


def repository_with(tmp_path: Path, *replacements: tuple[str, str]) -> Path:
    """A copy of the bundled models with these (old, new) edits to lead_scorer's config."""
    repository = tmp_path / "models"
    shutil.copytree(BUNDLED_MODELS, repository)
    config = repository / "lead_scorer" / "config.toml"
    text = config.read_text()
    for old, new in replacements:
        assert old in text, f"the bundled config changed: {old!r} is gone"
        text = text.replace(old, new)
    config.write_text(text)
    return repository


def always_batching_repository(tmp_path: Path) -> Path:
    """The bundled model with ``inline_run_us = 0``: every run goes through the batch queue
    (the bundled setting runs this cheap model at once when the batcher is idle), and a queue
    delay of 200 ms, so that requests decoded one after another on a busy machine still meet in
    a batch (the bundled 0.5 ms is shorter than decoding one of them)."""
    return repository_with(
        tmp_path,
        ("inline_run_us = 250", "inline_run_us = 0"),
        ("max_queue_delay_us = 500", "max_queue_delay_us = 200000"),
    )


async def test_batched_burst_links_one_batch_to_many_request_spans(
    spans: SpanRecorder, tmp_path: Path
) -> None:
    """The full tree of batched requests (lean detail keeps the same batch spans when a batch
    serves several requests: tests/gateway/telemetry/test_trace_detail.py)."""
    settings = Settings(
        port=0,
        data_dir=tmp_path,
        load_demo_corpus=False,
        model_repository=always_batching_repository(tmp_path),
        trace_detail="full",
    )
    gateway = await start(settings)
    try:
        await held_burst(gateway)
        servers = await spans.wait_for("leadgw.v1.LeadService/ScoreLeads", count=12)
        batches = [s for s in spans.finished() if s.name == "batch lead_scorer/1"]
        # 12 concurrent requests ran in fewer batches; every request links to its batch, and
        # every batch links back to each of its requests.
        assert len(batches) < 12
        by_batch_id = {b.attributes["leadgw.batch.id"]: b for b in batches}
        linked = set()
        for server in servers:
            batch = by_batch_id[int(server.attributes["leadgw.batch.id"])]
            assert server.attributes["leadgw.batch.size"] == batch.attributes["leadgw.batch.size"]
            assert any(link.context.span_id == batch.context.span_id for link in server.links)
            linked |= {link.context.span_id for link in batch.links}
        assert {s.context.span_id for s in servers} <= linked
        assert max(b.attributes["leadgw.batch.requests"] for b in batches) > 1
        # Each request waited in the queue: one "queue wait" child each, from its arrival to
        # its batch's start, as long as the wait it records.
        waits = [s for s in spans.finished() if s.name == "queue wait"]
        assert len(waits) == len(servers)
        for server in servers:
            (wait,) = [w for w in waits if w.parent.span_id == server.context.span_id]
            assert wait.context.trace_id == server.context.trace_id
            assert wait.attributes["leadgw.batch.id"] == server.attributes["leadgw.batch.id"]
            waited_ms = (wait.end_time - wait.start_time) / 1e6
            assert abs(waited_ms - server.attributes["leadgw.batch.queue_wait_ms"]) < 0.01
            assert server.start_time <= wait.start_time <= wait.end_time <= server.end_time
    finally:
        await gateway.stop(grace=1, drain=0)


async def test_summary_fallback_span_tree(spans: SpanRecorder, tmp_path: Path) -> None:
    settings = Settings(  # no LLM configured
        port=0, data_dir=tmp_path, load_demo_corpus=True, trace_detail="full"
    )
    gateway = await start(settings)
    try:
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            stub = pb_grpc.LeadServiceStub(channel)
            finals = [
                m.final
                async for m in stub.SummarizeLead(pb.SummarizeLeadRequest(lead_id="demo-0002"))
                if m.WhichOneof("event") == "final"
            ]
        assert finals[0].fallback
        server = (await spans.wait_for("leadgw.v1.LeadService/SummarizeLead"))[0]
        tree = {
            s.name: s for s in spans.finished() if s.context.trace_id == server.context.trace_id
        }
        for name in ("summary.score", "summary.retrieve", "summary.fallback", "embed query",
                     "vector search", "encode features"):  # fmt: skip
            assert name in tree, sorted(tree)
        assert tree["summary.score"].parent.span_id == server.context.span_id
        assert tree["vector search"].attributes["db.system"] == "qdrant"
        fallback = tree["summary.fallback"]
        assert any("not_configured" in str(e.attributes) for e in fallback.events) or (
            "not_configured" in str(fallback.attributes)
        )
    finally:
        await gateway.stop(grace=1, drain=0)
