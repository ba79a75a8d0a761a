"""The benchmark functions run end to end on a tiny store (the figures are not judged)."""

from __future__ import annotations

from pathlib import Path

from retrieval.bench import embedding_throughput, search_latency
from retrieval.embedder import OnnxEmbedder


async def test_search_latency_on_a_small_store(tmp_path: Path, embedder: OnnxEmbedder) -> None:
    figures = await search_latency(embedder, 300, 3, tmp_path / "data")
    assert (figures.notes, figures.queries) == (300, 3)
    assert 0 < figures.tenant_p50_ms <= figures.tenant_p99_ms
    assert 0 < figures.lead_p50_ms <= figures.lead_p99_ms


def test_embedding_throughput(embedder: OnnxEmbedder) -> None:
    assert embedding_throughput(embedder, n=16, repeats=1) > 0
