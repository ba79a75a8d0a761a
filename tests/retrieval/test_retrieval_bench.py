"""The notes benchmark's building blocks run end to end on a tiny store (figures not judged)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.notes_fill import LEADS, TENANT, embedding_throughput, fill_store, open_local_store
from retrieval.embedder import OnnxEmbedder


async def test_a_filled_store_holds_every_note_indexed(tmp_path: Path) -> None:
    store = await open_local_store(tmp_path / "data")
    try:
        await fill_store(store, 300)
        assert await store.count_notes(TENANT) == 300
        assert await store.count_notes(TENANT, "lead-0001") == 300 // LEADS + 1
        hits = await store.search(TENANT, [1.0] + [0.0] * 383, lead_id="lead-0002", top_k=3)
        assert {note.lead_id for note, _ in hits} == {"lead-0002"}
    finally:
        await store.close()


def test_embedding_throughput(embedder: OnnxEmbedder) -> None:
    assert embedding_throughput(embedder, n=16, repeats=1) > 0
