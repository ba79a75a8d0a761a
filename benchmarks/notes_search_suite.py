"""The ``notes-search`` target: ``SearchNotes`` through a real gateway over gRPC, at each size.

For each size:

1. bulk-load that many notes into a Qdrant Edge store with the gateway's own store class
   (``notes_fill``) and build its index (``NotesStore.wait_indexed``): the bulk-load time;
2. the store's own query time: the same queries, embedded beforehand, sent to the gateway's
   store class directly (hybrid: dense + keywords, tenant filter, top 5), one at a time, on the
   same data, before the gateway opens it (the store has one owner). Two figures per query:
   the engine's own time, taken on the store's thread around the engine call, and the whole
   ``NotesStore`` call, which adds the hop to that thread and back (the event loop never waits
   on the engine itself);
3. a gateway on that data directory: ``SearchNotes`` with the load generator, closed loop, one
   request in flight, end to end (the gateway embeds each query);

Two sets of queries, reported apart: ``note`` queries are whole note texts (12 to 37 tokens,
the harder case for the embedder and the keyword side), ``short`` ones are a few words, as a
person types into a search box.
4. the gateway stopped and started again: seconds until it is ready and until its first
   ``SearchNotes`` is answered with hits.

Why time the store directly rather than read the gateway's ``leadgw_notes_store_duration``
histogram: the histogram's buckets give a p99 only to a bucket's width, while the direct timing
gives exact percentiles of the same queries on the same shards.
"""

from __future__ import annotations

import asyncio
import os
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from benchmarks.histograms import Percentiles, new_histogram, record_seconds
from benchmarks.notes_fill import (
    FillTimes,
    fill_store_timed,
    open_local_store,
    query_lead,
    sample_texts,
    scratch_dir,
)
from benchmarks.progress import ProgressSink
from benchmarks.results import RunResult
from benchmarks.runner import run_load
from benchmarks.servers import ServerProcess, start_listening_server
from benchmarks.targets import GrpcUnaryTarget, TargetError
from leadgw_client.pb.leadgw.v1 import lead_service_pb2 as pb
from leadgw_client.pb.leadgw.v1 import lead_service_pb2_grpc as pb_grpc
from retrieval.embedder import MINILM_DQ_NAME, OnnxEmbedder
from retrieval.store import NoteQuery, NotesStore
from runtimes.types import DEFAULT_TENANT

if TYPE_CHECKING:
    from benchmarks.suite import BenchConfig

SEARCH_NOTES = "/leadgw.v1.LeadService/SearchNotes"
SCOPES = ("tenant", "lead")
QUERY_SETS = ("note", "short")
SHORT_QUERIES = (
    "annuity", "401k rollover", "Medicare", "Social Security timing", "college savings 529",
    "bond ladder", "tax-efficient investing", "estate planning", "life insurance",
    "market volatility", "retirement income plan", "health insurance", "IRA",
    "required minimum distributions", "long-term care", "interest rates",
)  # fmt: skip
TOP_K = 5
QUERIES = 64  # distinct queries, cycled
STORE_WARMUP_QUERIES = 5
FIRST_SEARCH_TIMEOUT_S = 30.0
# Issue 13's targets, reported next to the figures (the bench never fails on them).
END_TO_END_P99_TARGET_MS = 25.0
STORE_P99_TARGET_MS = 5.0
RESTART_TARGET_S = 5.0


@dataclass(frozen=True, slots=True)
class NotesSearchPlan:
    sizes: tuple[int, ...] = (10_000, 100_000)
    duration_s: float = 10.0
    warmup_s: float = 2.0
    embedder: str = MINILM_DQ_NAME
    """The local embedder form the gateway runs and the bench embeds the store's queries with."""


@dataclass(slots=True)
class NotesSearchScope:
    scope: str  # tenant: every note of the tenant; lead: one lead's notes
    queries: str  # note: whole note texts; short: a few words
    run: str  # the gateway run's label in the runs list
    end_to_end_ms: Percentiles  # SearchNotes over gRPC, query embedding included
    store_ms: Percentiles  # the engine's own time for those queries (see the module's 2.)
    store_errors: int
    store_call_ms: Percentiles | None = None  # the NotesStore call: the engine + the thread hop


@dataclass(slots=True)
class NotesSearchSize:
    notes: int
    load_s: float  # bulk load and index build
    load_write_s: float  # of which writing the notes (upserts, BM25 vectors)
    load_index_s: float  # of which building the index, once, at the end
    scopes: list[NotesSearchScope]
    restart_ready_s: float  # `leadgw serve` started on the filled store until it was listening
    restart_first_search_s: float  # ... until its first SearchNotes answered with hits
    first_search_hits: int


@dataclass(slots=True)
class NotesSearchResult:
    sizes: list[NotesSearchSize]
    store_timing: str = (
        "the engine's own time, on the store's thread, in the bench process before the gateway "
        "opened the data; the NotesStore call (the engine + the hop to its thread and back) "
        "beside it"
    )
    end_to_end_p99_target_ms: float = END_TO_END_P99_TARGET_MS
    store_p99_target_ms: float = STORE_P99_TARGET_MS
    restart_target_s: float = RESTART_TARGET_S
    exit_codes: dict[str, int | None] = field(default_factory=dict)
    embedder: str = MINILM_DQ_NAME  # the local embedder form the gateway ran

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SearchNotesTarget(GrpcUnaryTarget):
    def check_response(self, response: bytes) -> str:
        hits = pb.SearchNotesResponse.FromString(response).hits
        if not hits:
            raise TargetError(f"{self.name}: the preflight search found no note")
        return f"{len(hits)} hits, first {hits[0].note_id} ({hits[0].score:.3f})"


def query_texts(queries: str, n: int = QUERIES) -> list[str]:
    """The ``n`` queries of a set: note texts, or the short queries cycled."""
    if queries == "short":
        return [SHORT_QUERIES[i % len(SHORT_QUERIES)] for i in range(n)]
    return sample_texts(n)


def _label(scope: str, queries: str, notes: int) -> str:
    middle = scope if queries == "note" else f"{scope} {queries}"
    return f"searchnotes {middle} @ {notes:,} notes"


def search_requests(scope: str, texts: list[str], notes: int) -> tuple[bytes, ...]:
    """Pre-serialised SearchNotes requests, the i-th with the i-th query (and lead) for a store
    of ``notes`` notes."""
    return tuple(
        pb.SearchNotesRequest(query=text, lead_id=query_lead(scope, i, notes) or "", top_k=TOP_K)
        .SerializeToString()
        for i, text in enumerate(texts)
    )  # fmt: skip


def gateway_env(data_dir: Path, embedder: str = MINILM_DQ_NAME) -> dict[str, str]:
    """A gateway on the filled store, nothing else loaded; inherited OTEL_*/LEADGW_* dropped."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LEADGW_"))}
    env.update(
        LEADGW_DATA_DIR=str(data_dir),
        LEADGW_EMBEDDINGS_LOCAL=embedder,
        LEADGW_LOAD_DEMO_CORPUS="false",
        LEADGW_LOG_LEVEL="WARNING",
        OTEL_TRACES_EXPORTER="none",
        OTEL_METRICS_EXPORTER="none",
    )
    return env


@dataclass(slots=True)
class StoreTimes:
    engine_ms: Percentiles  # on the store's thread, around the engine call
    call_ms: Percentiles  # the NotesStore call, the hop to the store's thread included
    errors: int


async def _store_times(
    store: NotesStore,
    vectors: list[list[float]],
    texts: list[str],
    scope: str,
    plan: NotesSearchPlan,
    notes: int,
) -> StoreTimes:
    """``NotesStore.search_many_timed`` one query at a time for the plan's window, after a
    short warm-up."""
    engine, call = new_histogram(), new_histogram()
    errors = 0
    i = 0
    deadline = time.monotonic() + plan.duration_s
    while i < STORE_WARMUP_QUERIES + 5 or time.monotonic() < deadline:
        n = i % len(texts)
        query = NoteQuery(vectors[n], texts[n], query_lead(scope, n, notes), (), None, None, TOP_K)
        started = time.perf_counter()
        try:
            _, engine_s = await store.search_many_timed(DEFAULT_TENANT, [query])
        except Exception:  # counted; the run goes on
            engine_s = None
        elapsed = time.perf_counter() - started
        if i >= STORE_WARMUP_QUERIES:
            if engine_s is not None:
                record_seconds(engine, engine_s)
                record_seconds(call, elapsed)
            else:
                errors += 1
        elif i == STORE_WARMUP_QUERIES - 1:
            deadline = time.monotonic() + plan.duration_s
        i += 1
    return StoreTimes(Percentiles.of(engine), Percentiles.of(call), errors)


async def _load_and_time_store(
    data_dir: Path, notes: int, embedder: OnnxEmbedder, plan: NotesSearchPlan,
    progress: ProgressSink,
) -> tuple[FillTimes, dict[tuple[str, str], StoreTimes]]:  # fmt: skip
    store = await open_local_store(data_dir, plan.embedder)
    try:
        load = await fill_store_timed(store, notes, DEFAULT_TENANT)
        times = {}
        for queries in QUERY_SETS:
            texts = query_texts(queries)
            vectors = [v.tolist() for v in await embedder.embed(texts)]
            for scope in SCOPES:
                label = _label(scope, queries, notes)
                progress.begin(f"notes-search: store alone, {label}", plan.duration_s)
                try:
                    times[scope, queries] = await _store_times(
                        store, vectors, texts, scope, plan, notes
                    )
                finally:
                    progress.end()
        return load, times
    finally:
        await store.close()  # releases the shard's lock for the gateway


async def _first_search(address: str, request: bytes, timeout_s: float) -> int:
    """Sends ``request`` until it is answered (the gateway may still be opening the store)."""
    deadline = time.monotonic() + timeout_s
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.LeadServiceStub(channel)
        message = pb.SearchNotesRequest.FromString(request)
        while True:
            try:
                response = await stub.SearchNotes(
                    message, timeout=max(0.1, deadline - time.monotonic())
                )
                return len(response.hits)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                    raise TargetError(
                        f"notes-search: the restarted gateway's first SearchNotes failed: "
                        f"{exc.code().name}: {exc.details()}"
                    ) from None
                await asyncio.sleep(0.05)


def _start(config: BenchConfig, data_dir: Path, name: str, embedder: str) -> ServerProcess:
    command = [
        *config.leadgw_command,
        "--port", "0",
        "--model-repository", str(config.model_repository),
    ]  # fmt: skip
    return start_listening_server(
        name, command, config.server_ready_timeout_s, gateway_env(data_dir, embedder)
    )


def _one_size(
    config: BenchConfig, notes: int, plan: NotesSearchPlan, embedder: OnnxEmbedder,
    progress: ProgressSink, runs: list[RunResult], exit_codes: dict[str, int | None],
) -> NotesSearchSize:  # fmt: skip
    with scratch_dir("leadgw-bench-notes-search-") as tmp, ExitStack() as stack:
        data_dir = Path(tmp)
        progress.note(f"notes-search: bulk-loading {notes:,} notes into Qdrant Edge and indexing")
        load, store_times = asyncio.run(
            _load_and_time_store(data_dir, notes, embedder, plan, progress)
        )
        progress.note(f"notes-search: starting leadgw on {notes:,} notes")
        gateway = stack.enter_context(
            _start(config, data_dir, f"leadgw-notes-{notes}", plan.embedder)
        )
        shape = replace(
            config.shape, mode="closed", concurrency=1, processes=1, channels=1,
            warmup_s=plan.warmup_s, duration_s=plan.duration_s,
        )  # fmt: skip
        scopes = []
        for queries in QUERY_SETS:
            for scope in SCOPES:
                label = _label(scope, queries, notes)
                target = SearchNotesTarget(
                    name=label,
                    address=gateway.address,
                    method=SEARCH_NOTES,
                    payloads=search_requests(scope, query_texts(queries), notes),
                    rows_per_request=1,
                    timeout_s=config.timeout_s,
                    server_pid=gateway.pid,
                )
                preflight = asyncio.run(target.preflight(config.shape.connect_timeout_s))
                run = run_load(target, shape, preflight, progress, label)
                runs.append(run)
                store = store_times[scope, queries]
                scopes.append(
                    NotesSearchScope(
                        scope,
                        queries,
                        label,
                        run.latency_ms,
                        store.engine_ms,
                        store.errors,
                        store.call_ms,
                    )
                )
        exit_codes[f"leadgw-notes-{notes}"] = gateway.stop()

        progress.note(f"notes-search: restarting leadgw on {notes:,} notes")
        started = time.perf_counter()
        again = stack.enter_context(
            _start(config, data_dir, f"leadgw-notes-{notes}-restart", plan.embedder)
        )
        ready_s = time.perf_counter() - started
        hits = asyncio.run(
            _first_search(
                again.address,
                search_requests("tenant", query_texts("note"), notes)[0],
                FIRST_SEARCH_TIMEOUT_S,
            )
        )
        first_s = time.perf_counter() - started
        exit_codes[f"leadgw-notes-{notes}-restart"] = again.stop()
    return NotesSearchSize(
        notes,
        round(load.total_s, 2),
        round(load.write_s, 2),
        round(load.index_s, 2),
        scopes,
        ready_s,
        first_s,
        hits,
    )


def run_notes_search(
    config: BenchConfig, plan: NotesSearchPlan, progress: ProgressSink
) -> tuple[list[RunResult], NotesSearchResult]:
    """Every size in turn; returns the gateway runs and the figures (with servers' exit codes)."""
    embedder = asyncio.run(OnnxEmbedder.open(plan.embedder))
    runs: list[RunResult] = []
    exit_codes: dict[str, int | None] = {}
    try:
        sizes = [
            _one_size(config, notes, plan, embedder, progress, runs, exit_codes)
            for notes in plan.sizes
        ]
    finally:
        asyncio.run(embedder.close())
    return runs, NotesSearchResult(sizes, exit_codes=exit_codes, embedder=plan.embedder)
