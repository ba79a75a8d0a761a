"""Fixtures for the notes store: the real ONNX embedder (loaded once) and a real local Qdrant."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from notes_helpers import local_config

from retrieval.embedder import MINILM_NAME, OnnxEmbedder
from retrieval.notes import NotesService


@pytest.fixture(scope="session")
def embedder() -> Iterator[OnnxEmbedder]:
    """One ONNX session for the whole run: loading it is the slow part."""
    emb = OnnxEmbedder(batch_size=8)
    yield emb
    asyncio.run(emb.close())


@pytest.fixture(scope="session")
def float_embedder() -> Iterator[OnnxEmbedder]:
    """The earlier versions' form of the local model (float32 GEMMs), for upgrades and A/B."""
    emb = OnnxEmbedder(name=MINILM_NAME, batch_size=8)
    yield emb
    asyncio.run(emb.close())


@pytest.fixture
async def notes(tmp_path: Path, embedder: OnnxEmbedder) -> AsyncIterator[NotesService]:
    """A notes service on a fresh embedded Qdrant folder."""
    service = await NotesService.open(local_config(tmp_path / "data"), embedder=embedder)
    try:
        yield service
    finally:
        await service.close()
