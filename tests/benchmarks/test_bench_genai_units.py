"""The GenAI bench's parts on their own: tracing levels, bad options, the LLM stand-in's protocol,
the discard collector and the search target's leads."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import grpc
import pytest
from openai import AsyncOpenAI
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

from benchmarks.discard_collector import DiscardTraces
from benchmarks.fake_llm import FakeLLM, Pacing, set_pacing
from benchmarks.histograms import Percentiles, new_histogram, record_seconds
from benchmarks.notes_fill import TENANT, fill_store, open_local_store, query_lead
from benchmarks.results import CpuUse, RunResult
from benchmarks.summary_client import HoldCounts
from benchmarks.summary_suite import SummaryPlan, pooled_p99_ms, within_target
from benchmarks.summary_suite import _result as _summary_result
from benchmarks.tracing_suite import cost_interval, parse_levels, round_order, tracing_env
from retrieval.chunking import Chunker
from retrieval.embedder import OnnxEmbedder
from retrieval.notes import NotesService


def test_parse_levels_adds_off_first_and_normalises() -> None:
    assert parse_levels("0.01,1.0") == ("off", "0.01", "1")
    assert parse_levels("off, 0.5, off") == ("off", "0.5")
    for bad in ("0", "1.5", "some", "1.0/fast"):
        with pytest.raises(ValueError, match="--tracing"):
            parse_levels(bad)
    assert parse_levels("1.0, 1.0/full") == ("off", "1", "1/full")


def test_a_full_level_runs_a_gateway_with_every_span(monkeypatch) -> None:
    monkeypatch.setenv("LEADGW_TRACE_DETAIL", "full")  # the bench's own environment must not leak
    assert tracing_env("1", "127.0.0.1:4317")["LEADGW_TRACE_DETAIL"] == "lean"
    full = tracing_env("1/full", "127.0.0.1:4317")
    assert full["LEADGW_TRACE_DETAIL"] == "full"
    assert full["OTEL_TRACES_SAMPLER_ARG"] == "1"


def test_each_round_starts_one_level_later() -> None:
    """Over as many rounds as levels, every level runs once in each place of a round."""
    levels = ("off", "0.01", "1")
    orders = [round_order(levels, n) for n in range(1, 7)]
    assert orders[:3] == [("off", "0.01", "1"), ("0.01", "1", "off"), ("1", "off", "0.01")]
    assert orders[3:] == orders[:3]
    for place in range(3):
        assert sorted(order[place] for order in orders[:3]) == sorted(levels)


def test_cost_interval_is_paired_by_round() -> None:
    # The machine halves its speed in round 2; the level costs 10% in every round.
    interval = cost_interval([900.0, 450.0, 900.0], [1000.0, 500.0, 1000.0])
    assert interval is not None
    assert interval[0] == pytest.approx(0.1) and interval[1] == pytest.approx(0.1)
    low, high = cost_interval([800.0, 900.0, 850.0], [1000.0, 1000.0, 1000.0]) or (0, 0)
    assert low < 0.15 < high  # mean 15%, t(2) = 2.92, sd 5%: ±8.4%
    assert high - low == pytest.approx(2 * 2.920 * 0.05 / 3**0.5)
    assert cost_interval([900.0], [1000.0]) is None


def test_tracing_env_ignores_inherited_otel(monkeypatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert tracing_env("off", None)["OTEL_TRACES_EXPORTER"] == "none"
    env = tracing_env("0.01", "127.0.0.1:4317")
    assert "OTEL_SDK_DISABLED" not in env
    assert env["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
    assert env["OTEL_TRACES_SAMPLER_ARG"] == "0.01"
    assert env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] == "http://127.0.0.1:4317"


def test_tracing_needs_a_leadgw_target(bench) -> None:
    run = bench("--targets", "onnx-floor", "--tracing", "0.01", "--no-progress", timeout=60)
    assert run.returncode == 2
    assert "--tracing needs a leadgw target" in run.stderr


def test_bad_tracing_level_is_a_usage_error(bench) -> None:
    run = bench("--targets", "scoreleads", "--tracing", "2", "--no-progress", timeout=60)
    assert run.returncode == 2
    assert "sampling ratio is in (0, 1]" in run.stderr


async def test_fake_llm_streams_the_openai_protocol_with_its_pacing() -> None:
    llm = FakeLLM(Pacing(first_delay_s=0.0, gap_s=0.0, chunks=3))
    server = await asyncio.start_server(llm.serve, "127.0.0.1", 0)
    address = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    client = AsyncOpenAI(base_url=f"http://{address}/v1", api_key="x", max_retries=0)
    try:
        await set_pacing(address, Pacing(first_delay_s=0.0, gap_s=0.0, chunks=5))
        stream = await client.chat.completions.create(
            model="any",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        texts, usage = [], None
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                texts.append(chunk.choices[0].delta.content)
            usage = chunk.usage or usage
        assert len(texts) == 5  # the pacing set over the wire, not the one it started with
        assert usage is not None and usage.completion_tokens == 5
        assert llm.streams == 1
    finally:
        await client.close()
        llm.stop()
        server.close()


async def test_discard_collector_accepts_and_counts_spans() -> None:
    servicer = DiscardTraces()
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        request = trace_service_pb2.ExportTraceServiceRequest()
        scope = request.resource_spans.add().scope_spans.add()
        for i in range(3):
            scope.spans.add(name=f"span{i}", trace_id=bytes(16), span_id=bytes(8))
        assert isinstance(scope.spans[0], trace_pb2.Span)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = trace_service_pb2_grpc.TraceServiceStub(channel)
            answer = await stub.Export(request, timeout=5)
        assert not answer.HasField("partial_success")
        assert servicer.counts() == {"exports": 1, "spans": 3}
    finally:
        await server.stop(None)


def _run(label: str, latencies_ms: list[float]) -> RunResult:
    """A RunResult with just what the summary verdict reads: its latencies, as a histogram."""
    histogram = new_histogram()
    for ms in latencies_ms:
        record_seconds(histogram, ms / 1000)
    latency = Percentiles.of(histogram)
    empty = Percentiles.of(new_histogram())
    return RunResult(
        label, "open", {}, 1, 1, 100.0, len(latencies_ms), len(latencies_ms), {}, 0, 0,
        1.0, 1.0, 1.0, latency, empty, CpuUse(0.0, 0.0), None, 0, 0,
        histogram=base64.b64encode(histogram.encode()).decode("ascii"),
    )  # fmt: skip


def test_summary_rounds_pool_latencies_and_judge_both_ways() -> None:
    # Round 1's p99 is a 50 ms stall; pooled with round 2 it is no longer the 99th percentile.
    alone = [_run("alone #1", [1.0] * 98 + [50.0] * 2), _run("alone #2", [1.0] * 100)]
    held_runs = [_run("held #1", [1.0] * 100), _run("held #2", [1.0] * 98 + [50.0] * 2)]
    churn_runs = [_run("churn #1", [1.0] * 90 + [5.0] * 10), _run("churn #2", [1.0] * 100)]
    assert pooled_p99_ms([alone[0]]) == alone[0].latency_ms.p99
    assert pooled_p99_ms(alone) == pytest.approx(1.0, rel=0.01)

    phases = [
        ("held", 30.0, held_runs[0], HoldCounts(started=8, min_open=8)),
        ("churn", 4.0, churn_runs[0], HoldCounts(started=12, completed=4, min_open=0)),
        ("held", 30.0, held_runs[1], HoldCounts(started=8, min_open=7)),
        ("churn", 4.0, churn_runs[1], HoldCounts(started=11, completed=3, min_open=1)),
    ]
    result = _summary_result(SummaryPlan(rounds=2), 1.0, [], {}, alone, phases)
    held, churn = result.with_summaries
    assert result.rounds == 2 and result.scoreleads_alone == "alone #1"
    assert held.kind == "held" and held.met is True and held.p99_ratio == pytest.approx(1.0, 0.01)
    # Each round alone would have said something else: 1/50 and 50.
    assert held.round_ratios == [pytest.approx(0.02, rel=0.01), pytest.approx(50.0, rel=0.01)]
    assert (held.background.started, held.background.min_open) == (16, 7)
    assert churn.met is False and churn.p99_ratio == pytest.approx(5.0, rel=0.01)
    assert (churn.background.started, churn.background.completed) == (23, 7)

    # Each kind against its own issue's bound: held 10% (issue 6), churn 1.25× (issue 13).
    assert (held.target_ratio, churn.target_ratio) == (1.10, 1.25)
    # Within the bound either way: a p99 much lower with summaries is noise, not a pass.
    assert within_target(1.09, 1.10) and within_target(1 / 1.09, 1.10)
    assert not within_target(1.2, 1.10) and not within_target(0.8, 1.10)
    assert within_target(1.2, 1.25) and not within_target(0.79, 1.25)


def test_held_summaries_outlast_the_workers_connection_age(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A held stream lives up to SUMMARY_TIMEOUT_S; the workers' GOAWAY grace must not cut it
    (it did: every held stream ended UNAVAILABLE "max connection age" after 35 s)."""
    from benchmarks.summary_suite import SUMMARY_TIMEOUT_S, gateway_env
    from gateway.settings import Settings

    for name, value in gateway_env(tmp_path, "127.0.0.1:9", 16).items():
        if name.startswith("LEADGW_"):
            monkeypatch.setenv(name, value)
    assert Settings().max_connection_age_grace_s > SUMMARY_TIMEOUT_S


def test_summary_settings_reach_the_gateway_and_win(tmp_path: Path) -> None:
    from benchmarks.summary_suite import gateway_env

    env = gateway_env(
        tmp_path,
        "127.0.0.1:9",
        16,
        (("guard_embed_priority", "normal"), ("summary_cache_entries", "8")),
    )
    assert env["LEADGW_GUARD_EMBED_PRIORITY"] == "normal"
    assert env["LEADGW_SUMMARY_CACHE_ENTRIES"] == "8"  # over the bench's own 0


def test_a_summary_setting_that_is_not_a_setting_is_a_usage_error(bench) -> None:
    run = bench("--targets", "summary", "--summary-setting", "guard_priority=idle", timeout=60)
    assert run.returncode == 2
    assert "NAME one of leadgw's settings" in run.stderr


async def test_lead_searches_ask_only_about_leads_that_have_notes(tmp_path: Path) -> None:
    """With fewer notes than notes_fill's leads, the search target's lead-scoped queries cycle
    over the leads that have notes: on a fast host a 1 s window makes more than 300 queries, and
    with 300 notes the 301st asked about lead-0300, which has none (NotFound, counted as errors)."""
    notes = 300
    store = await open_local_store(tmp_path)
    await fill_store(store, notes)
    embedder = await OnnxEmbedder.open()
    service = NotesService(store, embedder, await asyncio.to_thread(Chunker))
    try:
        leads = [query_lead("lead", i, notes) for i in range(2 * notes + 1)]
        assert len(set(leads)) == notes and leads[notes] == leads[0] == "lead-0000"
        assert query_lead("tenant", 5, notes) is None
        # Each distinct lead is searched once, for real: every one of them has notes.
        for lead in sorted(set(leads)):
            hits = await service.search(TENANT, "annual review", lead_id=lead, top_k=1)
            assert len(hits) == 1, lead
    finally:
        await service.close()
        await embedder.close()
