"""The ``embed`` and ``search`` targets: the notes path measured in-process, as the gateway runs it.

``embed``: texts per second through the gateway's ONNX embedder.
``search``: one embedded Qdrant Edge store per size, bulk-loaded with random unit vectors; then,
for a fixed time each, tenant-wide and one-lead searches through the real path (validation,
embedding the query, the tenant-filtered Qdrant query), one at a time, as one summary does them.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.histograms import Percentiles, new_histogram, record_seconds
from benchmarks.notes_fill import (
    TENANT,
    embedding_throughput,
    fill_store,
    open_local_store,
    query_lead,
    sample_texts,
    scratch_dir,
    scratch_parent,
)
from benchmarks.progress import ProgressSink
from retrieval.chunking import Chunker
from retrieval.embedder import OnnxEmbedder
from retrieval.notes import NotesService

SCOPES = ("tenant", "lead")
WARMUP_QUERIES = 2
MIN_QUERIES = 5  # even when one search takes longer than the whole window


@dataclass(frozen=True, slots=True)
class RetrievalPlan:
    sizes: tuple[int, ...] = (10_000, 100_000)
    duration_s: float = 10.0
    embed_texts: int = 256
    embed_repeats: int = 3


@dataclass(slots=True)
class SearchRun:
    notes: int
    scope: str  # tenant: all of the tenant's notes; lead: one lead's notes (what a summary asks)
    fill_s: float
    open_s: float  # reopening the filled store from disk, as a restarted gateway does
    queries: int
    errors: int
    latency_ms: Percentiles
    ms_per_1000_notes: float  # p50 over the store size: how the search cost grows


@dataclass(slots=True)
class RetrievalResult:
    embed_texts_per_s: float | None
    embed_texts: int
    searches: list[SearchRun]
    storage: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


async def _timed_searches(
    service: NotesService, scope: str, duration_s: float, notes: int
) -> tuple[int, int, Percentiles]:
    texts = sample_texts(64)
    histogram = new_histogram()
    errors = 0
    count = 0
    deadline = time.monotonic() + duration_s
    i = 0
    while i < WARMUP_QUERIES + MIN_QUERIES or time.monotonic() < deadline:
        lead = query_lead(scope, i, notes)
        started = time.perf_counter()
        try:
            await service.search(TENANT, texts[i % len(texts)], lead_id=lead, top_k=5)
            ok = True
        except Exception:  # a failing query is counted, and the run goes on
            ok = False
        elapsed = time.perf_counter() - started
        if i >= WARMUP_QUERIES:
            count += 1
            if ok:
                record_seconds(histogram, elapsed)
            else:
                errors += 1
        elif i == WARMUP_QUERIES - 1:
            deadline = time.monotonic() + duration_s  # the window starts after the warm-up
        i += 1
    return count, errors, Percentiles.of(histogram)


async def _search_size(
    embedder: OnnxEmbedder, notes: int, plan: RetrievalPlan, progress: ProgressSink
) -> list[SearchRun]:
    with scratch_dir("leadgw-bench-search-") as tmp:
        progress.note(f"search: bulk-loading {notes:,} notes (random unit vectors)")
        store = await open_local_store(Path(tmp))
        try:
            fill_s = await fill_store(store, notes)
        finally:
            await store.close()
        started = time.perf_counter()
        store = await open_local_store(Path(tmp))
        open_s = time.perf_counter() - started
        service = NotesService(store, embedder, await asyncio.to_thread(Chunker))
        runs = []
        try:
            for scope in SCOPES:
                progress.begin(f"search {scope} @ {notes:,} notes", plan.duration_s)
                try:
                    count, errors, latency = await _timed_searches(
                        service, scope, plan.duration_s, notes
                    )
                finally:
                    progress.end()
                per_1000 = latency.p50 / (notes / 1000) if notes else 0.0
                runs.append(
                    SearchRun(notes, scope, fill_s, open_s, count, errors, latency, per_1000)
                )
        finally:
            await service.close()  # closes the store; the embedder is this module's to close
    return runs


async def run_retrieval(
    plan: RetrievalPlan, embed: bool, search: bool, progress: ProgressSink
) -> RetrievalResult:
    embedder = await OnnxEmbedder.open()
    try:
        throughput = None
        if embed:
            progress.note(f"embed: {plan.embed_texts} texts, best of {plan.embed_repeats}")
            throughput = await asyncio.to_thread(
                embedding_throughput, embedder, plan.embed_texts, plan.embed_repeats
            )
        searches: list[SearchRun] = []
        if search:
            for notes in plan.sizes:
                searches += await _search_size(embedder, notes, plan, progress)
    finally:
        await embedder.close()
    where = scratch_parent()
    storage = f"Qdrant Edge on tmpfs ({where})" if where else "Qdrant Edge in the temp folder"
    return RetrievalResult(throughput, plan.embed_texts, searches, storage)
