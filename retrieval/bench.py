"""Measures the notes path: embedding throughput, and search latency at a given store size.

The bulk of each store is random unit vectors written straight through the store (embedding
100,000 texts would measure the embedder again, slowly); every timed query goes through the real
path: validation, embedding the query, the tenant-filtered Qdrant search.

    python -m retrieval.bench --sizes 10000 100000 --queries 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.chunking import Chunker
from retrieval.demo_corpus import demo_corpus
from retrieval.embedder import Embedder, OnnxEmbedder
from retrieval.notes import NotesService
from retrieval.store import NotesStore, NoteWrite, make_client
from retrieval.types import NOTE_KINDS

TENANT = "bench"
_LEADS = 1_000
_WRITE_BATCH = 2_000


@dataclass(frozen=True, slots=True)
class SearchFigures:
    notes: int
    fill_s: float
    queries: int
    tenant_p50_ms: float
    tenant_p99_ms: float
    lead_p50_ms: float
    lead_p99_ms: float


def sample_texts(n: int) -> list[str]:
    """Realistic note texts (the demo corpus), repeated to ``n``."""
    notes, _ = demo_corpus(40, seed=11)
    return [notes[i % len(notes)].text for i in range(n)]


def embedding_throughput(embedder: OnnxEmbedder, n: int = 256, repeats: int = 3) -> float:
    """Texts per second through ``embed_sync`` (the embedder's own thread does the same work)."""
    texts = sample_texts(n)
    embedder.embed_sync(texts[:8])  # warm-up: first runs allocate
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        embedder.embed_sync(texts)
        best = max(best, n / (time.perf_counter() - start))
    return best


async def fill(store: NotesStore, n: int, dim: int, embedder_name: str, seed: int = 0) -> None:
    """Writes ``n`` one-chunk notes with random unit vectors and plausible payloads."""
    rng = np.random.default_rng(seed)
    now = datetime.now(UTC)
    for start in range(0, n, _WRITE_BATCH):
        count = min(_WRITE_BATCH, n - start)
        vectors = rng.standard_normal((count, dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        writes = []
        for i in range(count):
            number = start + i
            created = now - timedelta(days=float(rng.uniform(0, 180)))
            payload: dict[str, Any] = {
                "note_id": f"bench-{number}",
                "lead_id": f"lead-{number % _LEADS:04d}",
                "kind": NOTE_KINDS[number % 4],
                "title": "",
                "text": f"synthetic note {number}",
                "created_at": created.timestamp(),
                "created_iso": created.isoformat(),
                "record_hash": str(number),
                "text_hash": str(number),
                "embedder": embedder_name,
            }
            writes.append(NoteWrite(payload["note_id"], payload, ("",), [vectors[i]], 0))
        await store.write(TENANT, writes)


def _percentiles(samples: list[float]) -> tuple[float, float]:
    values = np.array(samples) * 1000.0
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


async def search_latency(embedder: Embedder, n: int, queries: int, data_dir: Path) -> SearchFigures:
    """p50/p99 of tenant-wide and one-lead searches over a local-mode store of ``n`` notes."""
    from gateway.settings import Settings

    settings = Settings(data_dir=data_dir, qdrant_url=None, load_demo_corpus=False)
    store = await NotesStore.open(
        lambda: make_client(settings), dim=embedder.dim, embedder_name=embedder.name
    )
    service = NotesService(store, embedder, await asyncio.to_thread(Chunker))
    try:
        started = time.perf_counter()
        await fill(store, n, embedder.dim, embedder.name)
        fill_s = time.perf_counter() - started
        texts = sample_texts(queries)
        tenant_times, lead_times = [], []
        for i, text in enumerate(texts):
            t0 = time.perf_counter()
            await service.search(TENANT, text, top_k=5)
            t1 = time.perf_counter()
            await service.search(TENANT, text, lead_id=f"lead-{i % _LEADS:04d}", top_k=5)
            t2 = time.perf_counter()
            tenant_times.append(t1 - t0)
            lead_times.append(t2 - t1)
    finally:
        await service.close()
    return SearchFigures(n, fill_s, queries, *_percentiles(tenant_times), *_percentiles(lead_times))


def machine() -> dict[str, str]:
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "onnxruntime": version("onnxruntime"),
        "qdrant-client": version("qdrant-client"),
    }


async def run(sizes: list[int], queries: int) -> dict[str, object]:
    embedder = await OnnxEmbedder.open()
    try:
        throughput = await asyncio.to_thread(embedding_throughput, embedder)
        searches = []
        for n in sizes:
            with tempfile.TemporaryDirectory(prefix="leadgw-bench-") as tmp:
                searches.append(asdict(await search_latency(embedder, n, queries, Path(tmp))))
    finally:
        await embedder.close()
    return {"machine": machine(), "embed_texts_per_s": throughput, "search": searches}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(run(args.sizes, args.queries)), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
