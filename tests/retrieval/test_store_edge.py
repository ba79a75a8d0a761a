"""The embedded Qdrant Edge store: migration from local mode, snapshots, a broken shard, health,
and the same store code on qdrant-client (the Qdrant server path)."""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import qdrant_edge as qe
from notes_helpers import local_config, make_note
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from retrieval.chunking import Chunker
from retrieval.edge_backend import EdgeBackend
from retrieval.embedder import OnnxEmbedder
from retrieval.migrate import MIGRATED_SUFFIX
from retrieval.notes import NotesService
from retrieval.server_backend import ServerBackend
from retrieval.store import NoteQuery, NotesStore, NoteWrite, point_id
from retrieval.store_runner import ThreadRunner
from runtimes.errors import FailedPrecondition, InvalidInput, Unavailable
from runtimes.types import LeadInput

T = "acme"
NOTES = [
    make_note("n1", "Wants to roll over a 401k into an IRA."),
    make_note("n2", "Asked about the ANN-7731 fixed annuity.", lead_id="lead-2"),
    make_note("n3", "Expecting a baby; asked about 529 college savings.", kind="email"),
]


def write_local_mode_dir(folder: Path, embedder: OnnxEmbedder) -> None:
    """A data dir as earlier versions wrote it: qdrant-client local mode, the same collections,
    point ids and payloads (what the old store wrote for one note and one profile)."""
    note = NOTES[0]
    vector = embedder.embed_sync([note.text])[0].tolist()
    created = note.created_at
    payload = {
        "note_id": note.note_id,
        "lead_id": note.lead_id,
        "kind": note.kind,
        "title": "",
        "text": note.text,
        "created_at": created.timestamp(),
        "created_iso": created.isoformat(),
        "record_hash": "r1",
        "text_hash": "t1",
        "embedder": embedder.name,
        "tenant": T,
        "chunk": 0,
        "chunks": 1,
        "chunk_text": note.text,
    }
    client = QdrantClient(path=str(folder))
    client.create_collection(
        "notes", vectors_config=qm.VectorParams(size=embedder.dim, distance=qm.Distance.COSINE)
    )
    client.upsert(
        "notes", [qm.PointStruct(id=point_id(T, note.note_id, 0), vector=vector, payload=payload)]
    )
    client.create_collection("leads", vectors_config={})
    profile = {"lead_id": "lead-1", "features": {"age": 61.0}, "profile_hash": "p", "tenant": T}
    client.upsert(
        "leads", [qm.PointStruct(id=point_id(T, "profile", 0), vector={}, payload=profile)]
    )
    client.close()


async def test_a_local_mode_data_dir_is_migrated_on_first_start(
    tmp_path: Path, embedder: OnnxEmbedder, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    write_local_mode_dir(data / "qdrant", embedder)
    with caplog.at_level(logging.INFO, logger="leadgw.retrieval"):
        notes = await NotesService.open(local_config(data), embedder=embedder)
    try:
        assert any(
            "migrated 1 note points and 1 lead profiles" in r.message for r in caplog.records
        )
        assert await notes.count_notes(T) == 1
        assert await notes.lead_profile(T, "lead-1") == {"age": 61.0}
        hits = await notes.search(T, "401k rollover", top_k=1)
        assert hits[0].note.text == NOTES[0].text
        # Keyword vectors were made from the stored text: a word-only query finds it too.
        assert (await notes.search(T, "IRA", top_k=1))[0].note.note_id == "n1"
    finally:
        await notes.close()
    assert not (data / "qdrant").exists()
    assert (data / f"qdrant{MIGRATED_SUFFIX}").is_dir(), "the old folder is kept"
    # A second start does not migrate again, and still has everything.
    again = await NotesService.open(local_config(data), embedder=embedder)
    assert await again.count_notes(T) == 1
    await again.close()


async def test_snapshot_and_restore(tmp_path: Path, embedder: OnnxEmbedder) -> None:
    notes = await NotesService.open(local_config(tmp_path / "data"), embedder=embedder)
    try:
        await notes.index(T, NOTES[:2], [LeadInput("lead-1", {"age": 40.0})])
        await notes.snapshot(tmp_path / "snap.tar")
        await notes.index(T, NOTES[2:])
        await notes.delete(T, ["n1"])
        assert await notes.count_notes(T) == 2

        await notes.restore(tmp_path / "snap.tar")
        assert await notes.count_notes(T) == 2
        assert {h.note.note_id for h in await notes.search(T, "anything", top_k=5)} == {"n1", "n2"}
        assert await notes.lead_profile(T, "lead-1") == {"age": 40.0}
        await notes.index(T, NOTES[2:])  # and it takes writes again
        assert await notes.count_notes(T) == 3

        (tmp_path / "junk.tar").write_bytes(b"not a tar")
        with pytest.raises(InvalidInput, match=r"junk\.tar cannot be read as a notes snapshot"):
            await notes.restore(tmp_path / "junk.tar")
        assert await notes.count_notes(T) == 3, "a refused restore changes nothing"
    finally:
        await notes.close()


@contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Writes past ``limit`` bytes fail with EFBIG, as on a full disk (Python ignores SIGXFSZ)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


async def test_a_failed_snapshot_leaves_no_partial_file_and_keeps_the_old_one(
    tmp_path: Path, embedder: OnnxEmbedder
) -> None:
    notes = await NotesService.open(local_config(tmp_path / "data"), embedder=embedder)
    try:
        await notes.index(T, NOTES[:2])
        target = tmp_path / "snap.tar"
        await notes.snapshot(target)
        before = target.read_bytes()

        # Writing fails part-way (the disk fills): the earlier snapshot is untouched.
        with file_size_limit(64 * 1024), pytest.raises(OSError, match="File too large"):
            await notes.snapshot(target)
        assert target.read_bytes() == before
        assert not list(tmp_path.glob("*.partial"))

        # The tar is written but the final rename fails (a folder is in the way).
        folder = tmp_path / "backups"
        (folder / "kept").mkdir(parents=True)
        with pytest.raises(OSError):
            await notes.snapshot(folder)
        assert (folder / "kept").is_dir()
        assert not list(tmp_path.glob("*.partial"))
        assert await notes.count_notes(T) == 2, "the store still works"
    finally:
        await notes.close()


async def test_a_corrupt_shard_is_a_start_up_error_naming_it(
    tmp_path: Path, embedder: OnnxEmbedder
) -> None:
    data = tmp_path / "data"
    first = await NotesService.open(local_config(data), embedder=embedder)
    await first.index(T, NOTES[:1])
    await first.close()
    (data / "edge" / "notes" / "edge_config.json").write_text("{garbage")
    with pytest.raises(FailedPrecondition) as caught:
        await NotesService.open(local_config(data), embedder=embedder)
    assert f"the notes store {data / 'edge' / 'notes'} is not a readable Qdrant Edge shard" in (
        caught.value.message
    )


async def test_a_foreign_directory_is_refused(tmp_path: Path, embedder: OnnxEmbedder) -> None:
    notes_dir = tmp_path / "data" / "edge" / "notes"
    notes_dir.mkdir(parents=True)
    (notes_dir / "photo.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(FailedPrecondition, match=f"{notes_dir} is not a readable Qdrant Edge"):
        await NotesService.open(local_config(tmp_path / "data"), embedder=embedder)
    assert (notes_dir / "photo.jpg").exists(), "nothing of it is deleted"


async def test_health_reopens_a_store_whose_files_vanished_and_came_back(
    tmp_path: Path, embedder: OnnxEmbedder
) -> None:
    notes = await NotesService.open(local_config(tmp_path / "data"), embedder=embedder)
    try:
        await notes.index(T, NOTES)
        await notes.health()
        # The engine is dropped under the store (as a crash of its owner would); health reopens.
        await notes._store._runner._close_backend()  # type: ignore[attr-defined]
        await notes.health()
        assert await notes.count_notes(T) == 3
    finally:
        await notes.close()


async def test_the_server_path_runs_the_same_store_code(
    tmp_path: Path, embedder: OnnxEmbedder
) -> None:
    """qdrant-client's in-memory client stands in for a Qdrant server: the same client API,
    so the server backend's collections, filters, sparse vectors and RRF query all run."""
    runner = ThreadRunner(lambda: ServerBackend(QdrantClient(":memory:")))
    store = await NotesStore.open_with(runner, dim=embedder.dim, embedder_name=embedder.name)
    notes = NotesService(store, embedder, Chunker())
    try:
        await notes.index(T, NOTES, [LeadInput("lead-1", {"age": 40.0})])
        assert (await notes.search(T, "ANN-7731", top_k=1))[0].note.note_id == "n2"
        assert (await notes.search(T, "saving for a child's education", top_k=1))[
            0
        ].note.note_id == "n3"
        assert await notes.search("other", "ANN-7731", top_k=5) == []
        assert [n.note_id for n in await notes.recent_notes(T, "lead-1", 5)] == ["n1", "n3"]
        assert await notes.delete(T, lead_id="lead-1") == 2
        assert await notes.count_notes(T) == 1
    finally:
        await notes.close()


def test_edge_refuses_a_second_opener(tmp_path: Path) -> None:
    config = local_config(tmp_path).store
    first = EdgeBackend(config)
    first.ensure_schema(4)
    try:
        with pytest.raises(Unavailable, match="in use by another process"):
            EdgeBackend(config).ensure_schema(4)
    finally:
        first.close()
    shutil.rmtree(tmp_path / "edge")


def test_a_new_notes_shard_keeps_int8_copies_and_indexes_on_every_core(tmp_path: Path) -> None:
    backend = EdgeBackend(local_config(tmp_path).store)
    backend.ensure_schema(4)
    backend.close()
    config = json.loads((tmp_path / "edge" / "notes" / "edge_config.json").read_text())
    assert config["quantization_config"] == {"scalar": {"type": "int8", "always_ram": True}}
    assert config["hnsw_config"]["max_indexing_threads"] == 0  # the build runs only when asked
    assert config["hnsw_config"]["ef_construct"] == 64  # same recall as 100 on real embeddings


def test_a_shard_created_earlier_keeps_its_payload_indexes(tmp_path: Path) -> None:
    """Index settings live with the shard: opening an older one does not rebuild its indexes."""
    config = local_config(tmp_path).store
    path = config.edge_dir / "notes"
    path.parent.mkdir(parents=True)
    older = qe.EdgeShard.create(
        str(path), qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=4, distance=qe.Distance.Cosine))
    )
    older.update(qe.UpdateOperation.create_field_index("kind", qe.PayloadSchemaType.Keyword))
    older.close()
    backend = EdgeBackend(config)
    backend.ensure_schema(4)
    try:
        schema = backend._shard("notes").info().payload_schema
    finally:
        backend.close()
    assert set(schema) == {"kind"}
    assert schema["kind"].params is None or schema["kind"].params.enable_hnsw is not False


async def test_indexed_quantized_search_scores_are_exact_cosines(tmp_path: Path) -> None:
    """The int8 copies only pick candidates: the scores come from the float32 vectors."""
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((300, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store = await NotesStore.open_with(
        ThreadRunner(partial(EdgeBackend, local_config(tmp_path).store)), dim=8, embedder_name="e"
    )
    try:
        writes = [
            NoteWrite(f"n{i}", _payload(i), (f"note {i}",), [vectors[i].tolist()], 0)
            for i in range(len(vectors))
        ]
        await store.write(T, writes)
        await store.wait_indexed()
        query = vectors[7] + 0.1 * vectors[9]
        query /= np.linalg.norm(query)
        found = await store.search(T, query.tolist(), top_k=5)
    finally:
        await store.close()
    exact = vectors @ query
    best = np.argsort(-exact)[:5]
    assert [note.note_id for note, _ in found] == [f"n{i}" for i in best]
    assert [score for _, score in found] == pytest.approx(exact[best].tolist(), abs=1e-5)


class _SlowSearchBackend(EdgeBackend):
    """Edge whose every search takes at least ENGINE_S more."""

    ENGINE_S = 0.05

    def search(self, specs):  # type: ignore[no-untyped-def]
        time.sleep(self.ENGINE_S)
        return super().search(specs)


async def test_search_time_is_the_engines_own_without_the_wait_for_its_thread(
    tmp_path: Path,
) -> None:
    """What the bench reports as the store's own query time: taken on the store's thread around
    the engine, so it counts the engine's work and not a call's wait for that thread."""
    store = await NotesStore.open_with(
        ThreadRunner(partial(_SlowSearchBackend, local_config(tmp_path).store), threads=1),
        dim=8,
        embedder_name="e",
    )
    try:
        await store.write(T, [NoteWrite("n0", _payload(0), ("note 0",), [[1.0] + [0.0] * 7], 0)])
        query = NoteQuery([1.0] + [0.0] * 7, None, None, (), None, None, 5)

        async def timed_call() -> tuple[float, float, list[str]]:
            started = time.perf_counter()
            found, engine_s = await store.search_many_timed(T, [query])
            return time.perf_counter() - started, engine_s, [n.note_id for n, _ in found[0]]

        # One thread: the second call waits for the first one's engine work before its own.
        first, second = await asyncio.gather(timed_call(), timed_call())
    finally:
        await store.close()
    for elapsed, engine_s, found in (first, second):
        assert found == ["n0"]
        assert _SlowSearchBackend.ENGINE_S <= engine_s <= elapsed
    waited = second[0] - second[1]
    assert waited >= _SlowSearchBackend.ENGINE_S, "the wait for the thread is not engine time"


def _payload(i: int) -> dict[str, object]:
    return {
        "note_id": f"n{i}",
        "lead_id": "lead-1",
        "kind": "call",
        "title": "",
        "text": f"note {i}",
        "created_at": 0.0,
        "created_iso": "2026-01-01T00:00:00+00:00",
        "record_hash": str(i),
        "text_hash": str(i),
        "embedder": "e",
    }
