"""Changing the embedder: ``reindex`` re-embeds every stored note from its stored text into a new
collection that replaces the old one only once complete, on Qdrant Edge and on qdrant-client.

The second embedder is an OpenAI-compatible endpoint on loopback serving the local MiniLM's
vectors cut to 192 columns (another name and another size, rankings that still mean something).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from notes_helpers import local_config, make_note
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from retrieval.backend import NOTES as NOTES_COLLECTION
from retrieval.backend import PointWrite
from retrieval.chunking import Chunker
from retrieval.config import NotesConfig
from retrieval.edge_backend import EdgeBackend
from retrieval.embedder import Embedder, OnnxEmbedder, OpenAIEmbedder
from retrieval.filters import unscoped_filter
from retrieval.notes import NotesService
from retrieval.reindex import reindex
from retrieval.report import IndexStatus
from retrieval.server_backend import ServerBackend
from retrieval.store import NotesStore
from retrieval.store_runner import ThreadRunner
from runtimes.errors import FailedPrecondition, Unavailable
from runtimes.types import LeadInput
from tests.fakes.embeddings_server import EmbeddingsServer

T = "acme"
LONG = "We went through the estate plan, the trust and the beneficiaries in detail. " * 30
NOTES = [
    make_note("n1", "Wants to roll over a 401k into an IRA."),
    make_note("n2", "Asked about the ANN-7731 fixed annuity.", lead_id="lead-2"),
    make_note("n3", "Expecting a baby; asked about 529 college savings.", kind="email"),
    make_note("n4", LONG, title="Estate review", lead_id="lead-3"),
    make_note("n5", "Firm policy on fees for managed accounts.", lead_id="", kind="document"),
]
NOTES += [make_note(f"f{i}", f"Filler note number {i} about a routine check-in.") for i in range(9)]


@pytest.fixture
def endpoint(embedder: OnnxEmbedder) -> Iterator[EmbeddingsServer]:
    with EmbeddingsServer(embedder, dims=192) as server:
        yield server


async def open_with(config: NotesConfig, embedder: Embedder) -> NotesService:
    return await NotesService.open(config, embedder=embedder)


async def check_everything_is_there(notes: NotesService, points: int) -> None:
    assert await notes.count_notes(T) == len(NOTES)
    assert await notes.count_points(T) == points
    assert (await notes.search(T, "ANN-7731", top_k=1))[0].note.note_id == "n2"
    assert (await notes.search(T, "saving for a child's education", top_k=1))[
        0
    ].note.note_id == "n3"
    hits = await notes.search(T, "trust and beneficiaries", top_k=1, lead_id="lead-3")
    assert hits[0].note.text == LONG and hits[0].note.title == "Estate review"
    assert await notes.lead_profile(T, "lead-1") == {"age": 40.0}


async def index_with_onnx(config: NotesConfig, embedder: OnnxEmbedder) -> int:
    notes = await open_with(config, embedder)
    try:
        await notes.index(T, NOTES, [LeadInput("lead-1", {"age": 40.0})])
        points = await notes.count_points(T)
    finally:
        await notes.close()
    assert points > len(NOTES)  # the long note has several chunks, each its own point
    return points


async def test_reindex_edge_with_another_embedder(
    tmp_path: Path, embedder: OnnxEmbedder, endpoint: EmbeddingsServer
) -> None:
    config = local_config(tmp_path / "data")
    points = await index_with_onnx(config, embedder)
    other = await OpenAIEmbedder.open(endpoint.url, "minilm-192", None)
    try:
        with pytest.raises(FailedPrecondition, match="leadgw notes reindex"):
            await open_with(config, other)

        seen: list[tuple[int, int]] = []
        report = await reindex(
            config.store, other, batch=4, progress=lambda d, t: seen.append((d, t))
        )
        assert (report.points, report.embedded) == (points, points)
        assert report.previous == (embedder.name,)
        assert seen[0] == (0, points) and seen[-1] == (points, points)
        assert [d for d, _ in seen] == sorted(d for d, _ in seen)

        edge = config.store.edge_dir
        assert sorted(p.name for p in edge.iterdir()) == ["leads", "notes"]  # old one gone
        stored = json.loads((edge / "notes" / "edge_config.json").read_text())
        assert stored["vectors"][""]["size"] == 192

        notes = await open_with(config, other)
        try:
            await check_everything_is_there(notes, points)
            # The payload hashes were rewritten for the new embedder: re-sending is a no-op.
            report_again = await notes.index(T, NOTES[:2])
            assert {r.status for r in report_again.results} == {IndexStatus.UNCHANGED}
        finally:
            await notes.close()
        # ...and the old embedder is refused now, pointing at the command.
        with pytest.raises(FailedPrecondition, match="leadgw notes reindex"):
            await open_with(config, embedder)
    finally:
        await other.close()


async def test_an_interrupted_reindex_keeps_the_old_store_and_carries_on(
    tmp_path: Path, embedder: OnnxEmbedder, endpoint: EmbeddingsServer
) -> None:
    config = local_config(tmp_path / "data")
    points = await index_with_onnx(config, embedder)
    other = await OpenAIEmbedder.open(endpoint.url, "minilm-192", None)
    try:
        endpoint.fail_after = 3  # the probe, then two batches of 4
        with pytest.raises(Unavailable, match="embeddings endpoint"):
            await reindex(config.store, other, batch=4)

        # The old store is whole and serves the old embedder as before.
        notes = await open_with(config, embedder)
        try:
            await check_everything_is_there(notes, points)
        finally:
            await notes.close()

        endpoint.fail_after = None
        before = endpoint.texts
        report = await reindex(config.store, other, batch=4)
        assert report.points == points
        assert report.embedded == points - 8  # the two batches done before are kept
        assert endpoint.texts - before == points - 8
        notes = await open_with(config, other)
        try:
            await check_everything_is_there(notes, points)
        finally:
            await notes.close()
    finally:
        await other.close()


def test_a_swap_cut_short_is_finished_by_the_next_open(tmp_path: Path) -> None:
    """A crash between the two renames: no ``notes`` shard, the complete new one beside it."""
    config = local_config(tmp_path).store
    backend = EdgeBackend(config)
    backend.ensure_schema(4)
    backend.open_reindex(2)
    payload = {"tenant": T, "note_id": "n1", "chunk": 0, "embedder": "e2"}
    backend.upsert(
        "notes.reindex", [PointWrite("7b0f3b5e-8f0e-4d5c-9d2a-0c6f5b1a2e3d", payload, [1.0, 0.0])]
    )
    backend.close()
    edge = config.edge_dir
    (edge / "notes.reindex.complete").write_text("")
    (edge / "notes").rename(edge / "notes.replaced")

    reopened = EdgeBackend(config)
    try:
        assert reopened.stored_dim() == 2
        reopened.ensure_schema(2)
        found = reopened.scroll(NOTES_COLLECTION, unscoped_filter(must_not=()), True)
        assert [p["note_id"] for p in found] == ["n1"]
    finally:
        reopened.close()
    assert sorted(p.name for p in edge.iterdir()) == ["leads", "notes"]


async def test_reindex_on_the_server_path_swaps_an_alias(
    tmp_path: Path, embedder: OnnxEmbedder, endpoint: EmbeddingsServer
) -> None:
    """qdrant-client's local mode stands in for a Qdrant server (the same client API): the old
    collection is replaced by a new one the ``notes`` alias names, twice over."""
    folder = str(tmp_path / "qdrant")

    def runner() -> ThreadRunner:
        return ThreadRunner(lambda: ServerBackend(QdrantClient(path=folder)))

    store = await NotesStore.open_with(runner(), dim=embedder.dim, embedder_name=embedder.name)
    notes = NotesService(store, embedder, Chunker())
    await notes.index(T, NOTES, [LeadInput("lead-1", {"age": 40.0})])
    points = await notes.count_points(T)
    await notes.close()

    other = await OpenAIEmbedder.open(endpoint.url, "minilm-192", None)
    try:
        with pytest.raises(FailedPrecondition, match="leadgw notes reindex"):
            await NotesStore.open_with(runner(), dim=other.dim, embedder_name=other.name)
        report = await reindex(local_config(tmp_path).store, other, runner=runner())
        assert report.points == points
        assert _collections(folder) == (["notes_a"], {"notes": "notes_a"})

        store = await NotesStore.open_with(runner(), dim=other.dim, embedder_name=other.name)
        notes = NotesService(store, other, Chunker())
        try:
            await check_everything_is_there(notes, points)
        finally:
            await notes.close()

        # And back: the alias moves to the other generation, the first one is dropped.
        await reindex(local_config(tmp_path).store, embedder, runner=runner())
        assert _collections(folder) == (["notes_b"], {"notes": "notes_b"})
        store = await NotesStore.open_with(runner(), dim=embedder.dim, embedder_name=embedder.name)
        notes = NotesService(store, embedder, Chunker())
        try:
            await check_everything_is_there(notes, points)
        finally:
            await notes.close()
    finally:
        await other.close()


def _collections(folder: str) -> tuple[list[str], dict[str, str]]:
    client = QdrantClient(path=folder)
    try:
        names = sorted(c.name for c in client.get_collections().collections)
        aliases = {a.alias_name: a.collection_name for a in client.get_aliases().aliases}
    finally:
        client.close()
    return [n for n in names if n.startswith("notes")], aliases


async def test_an_alias_lost_mid_commit_is_recovered_and_checked(
    tmp_path: Path, embedder: OnnxEmbedder, endpoint: EmbeddingsServer
) -> None:
    """A commit cut between dropping a pre-alias ``notes`` collection and creating the alias
    leaves only the new generation: the next open points the alias at it, and checks it like
    any collection (a 384-dim embedder is refused on the 192-dim one it finds)."""
    folder = str(tmp_path / "qdrant")

    def runner() -> ThreadRunner:
        return ThreadRunner(lambda: ServerBackend(QdrantClient(path=folder)))

    store = await NotesStore.open_with(runner(), dim=embedder.dim, embedder_name=embedder.name)
    notes = NotesService(store, embedder, Chunker())
    await notes.index(T, NOTES, [LeadInput("lead-1", {"age": 40.0})])
    points = await notes.count_points(T)
    await notes.close()
    other = await OpenAIEmbedder.open(endpoint.url, "minilm-192", None)
    try:
        await reindex(local_config(tmp_path).store, other, runner=runner())
        client = QdrantClient(path=folder)
        drop = qm.DeleteAliasOperation(delete_alias=qm.DeleteAlias(alias_name=NOTES_COLLECTION))
        client.update_collection_aliases(change_aliases_operations=[drop])  # a cut-short commit
        client.close()
        assert _collections(folder) == (["notes_a"], {})

        with pytest.raises(FailedPrecondition, match="192-dim"):
            await NotesStore.open_with(runner(), dim=embedder.dim, embedder_name=embedder.name)
        assert _collections(folder) == (["notes_a"], {"notes": "notes_a"})
        store = await NotesStore.open_with(runner(), dim=other.dim, embedder_name=other.name)
        notes = NotesService(store, other, Chunker())
        try:
            await check_everything_is_there(notes, points)
        finally:
            await notes.close()
    finally:
        await other.close()
