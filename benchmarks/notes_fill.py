"""Bulk-loaded notes stores for the GenAI benches: random unit vectors written straight through the
gateway's own store class (embedding 100,000 texts would measure the embedder again, slowly), with
realistic note texts so that keyword matching has words to index.

The stores are the gateway's default, Qdrant Edge, in a scratch folder (tmpfs when there is one).
After the load the bench waits for Edge's background optimizer, so the figures are those of an
indexed store, and reports that wait as part of the load.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.config import StoreConfig
from retrieval.demo_corpus import demo_corpus
from retrieval.embedder import MINILM_DIM, MINILM_DQ_NAME, OnnxEmbedder
from retrieval.store import NotesStore, NoteWrite
from retrieval.types import NOTE_KINDS

TMPFS = Path("/dev/shm")
TENANT = "bench"
LEADS = 1_000
"""Filled notes are spread over leads lead-0000 to lead-0999."""


def leads_with_notes(notes: int) -> int:
    """How many leads a fill of ``notes`` notes gives notes to (note k goes to lead k mod LEADS):
    the leads past them have none, and a search or summary for them is NotFound."""
    return max(1, min(notes, LEADS))


def query_lead(scope: str, i: int, notes: int) -> str | None:
    """The lead the i-th search query asks about (None: ``scope`` "tenant", tenant-wide), cycling
    over the leads a fill of ``notes`` notes gave notes to: a fast host makes more queries in a
    second than a small fill has leads with notes."""
    return f"lead-{i % leads_with_notes(notes):04d}" if scope == "lead" else None


_WRITE_BATCH = 1_000
"""Notes per store call: one call stays well inside the store's call timeout on a busy machine."""


def scratch_parent() -> Path | None:
    """Where scratch stores go: tmpfs if writable, else the system's temporary folder."""
    return TMPFS if TMPFS.is_dir() and os.access(TMPFS, os.W_OK) else None


def scratch_dir(prefix: str) -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix=prefix, dir=scratch_parent())


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


async def open_local_store(data_dir: Path, embedder_name: str = MINILM_DQ_NAME) -> NotesStore:
    """The gateway's own store class on the embedded Edge store under ``data_dir``, its notes
    recorded as ``embedder_name``'s (a gateway configured with another refuses or re-embeds
    them)."""
    return await NotesStore.open(
        StoreConfig(data_dir=data_dir), dim=MINILM_DIM, embedder_name=embedder_name
    )


def _writes(
    start: int, count: int, rng: np.random.Generator, texts: Sequence[str], embedder: str
) -> list[Any]:
    now = datetime.now(UTC)
    vectors = rng.standard_normal((count, MINILM_DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    writes = []
    for i in range(count):
        number = start + i
        created = now - timedelta(days=float(rng.uniform(0, 180)))
        text = f"{texts[number % len(texts)]} (note {number})"
        payload: dict[str, Any] = {
            "note_id": f"bench-{number}",
            "lead_id": f"lead-{number % LEADS:04d}",
            "kind": NOTE_KINDS[number % 4],
            "title": "",
            "text": text,
            "created_at": created.timestamp(),
            "created_iso": created.isoformat(),
            "record_hash": str(number),
            "text_hash": str(number),
            "embedder": embedder,
        }
        writes.append(NoteWrite(payload["note_id"], payload, (text,), [vectors[i]], 0))
    return writes


@dataclass(frozen=True, slots=True)
class FillTimes:
    """Where a bulk load's time went."""

    write_s: float  # building the writes and upserting them (BM25 vectors made by the store)
    index_s: float  # the HNSW build of what was written (NotesStore.wait_indexed)

    @property
    def total_s(self) -> float:
        return self.write_s + self.index_s


async def fill_store_timed(
    store: NotesStore, notes: int, tenant: str | None = None, seed: int = 0
) -> FillTimes:
    """Writes ``notes`` one-chunk notes, then builds their index once, at the end."""
    rng = np.random.default_rng(seed)
    texts = sample_texts(200)
    started = time.perf_counter()
    for start in range(0, notes, _WRITE_BATCH):
        count = min(_WRITE_BATCH, notes - start)
        await store.write(tenant or TENANT, _writes(start, count, rng, texts, store.embedder_name))
    written = time.perf_counter()
    await store.wait_indexed()
    return FillTimes(written - started, time.perf_counter() - written)


async def fill_store(
    store: NotesStore, notes: int, tenant: str | None = None, seed: int = 0
) -> float:
    """Writes ``notes`` one-chunk notes; returns the seconds taken until they are indexed."""
    return (await fill_store_timed(store, notes, tenant, seed)).total_s


async def build_store(data_dir: Path, notes: int, tenant: str | None = None) -> float:
    """A closed store of ``notes`` notes under ``data_dir``; returns the fill seconds."""
    store = await open_local_store(data_dir)
    try:
        return await fill_store(store, notes, tenant)
    finally:
        await store.close()  # releases the shard's lock for the gateway that opens it next
