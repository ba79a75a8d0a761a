"""Upgrading: `leadgw serve` on a data dir an earlier version made (the demo corpus, embedded
with the float form of the local MiniLM) re-embeds it before serving, logs its progress, and
then serves every note under the new default embedder, one process or several."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import grpc
import pytest

from leadgw_client.pb.leadgw.v1 import lead_service_pb2 as pb
from leadgw_client.pb.leadgw.v1 import lead_service_pb2_grpc as pb_grpc
from retrieval.config import NotesConfig, StoreConfig
from retrieval.demo_corpus import load_demo_corpus_if_empty
from retrieval.embedder import MINILM_DQ_NAME, MINILM_NAME, OnnxEmbedder
from retrieval.notes import NotesService
from retrieval.store import NotesStore
from tests.conftest import start_gateway_process


async def earlier_versions_data_dir(data: Path) -> int:
    """The demo corpus as an earlier version's `make serve` stored it; returns its points."""
    embedder = await OnnxEmbedder.open(MINILM_NAME)
    notes = await NotesService.open(NotesConfig(store=StoreConfig(data_dir=data)), embedder)
    try:
        await load_demo_corpus_if_empty(notes)
        return await notes.count_points("default")
    finally:
        await notes.close()
        await embedder.close()


async def points_as_the_new_default(data: Path) -> int:
    """The store's points, opened as the new default: that open succeeds only if no point is
    another embedder's (the check a start makes)."""
    store = await NotesStore.open(StoreConfig(data_dir=data), dim=384, embedder_name=MINILM_DQ_NAME)
    try:
        return await store.count_points("default")
    finally:
        await store.close()


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_on_an_earlier_versions_data_dir_re_embeds_then_serves(
    tmp_path: Path, workers: str
) -> None:
    data = tmp_path / "data"
    points = asyncio.run(earlier_versions_data_dir(data))
    assert points > 200
    gateway = start_gateway_process(
        tmp_path,
        "--workers",
        workers,
        env={"LEADGW_LOAD_DEMO_CORPUS": "true", "LEADGW_LOG_FORMAT": "json"},
        timeout=300.0,
    )
    try:
        with grpc.insecure_channel(gateway.address) as channel:
            stub = pb_grpc.LeadServiceStub(channel)
            response = stub.SearchNotes(
                pb.SearchNotesRequest(query="fixed indexed annuity", top_k=5), timeout=30
            )
            assert len(response.hits) == 5
    finally:
        assert gateway.stop() == 0
    messages = [
        json.loads(line).get("message", "")
        for line in gateway.stderr_text().splitlines()
        if line.startswith("{")
    ]
    assert any(m.startswith("notes store: the notes were embedded with") for m in messages)
    assert f"notes store: re-embedded {points} of {points} note points (100%)" in " ".join(messages)
    # Nothing lost or added, and nothing of the old embedder left.
    assert asyncio.run(points_as_the_new_default(data)) == points
