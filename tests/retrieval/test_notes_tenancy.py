"""Tenants are walls: tenant B never sees tenant A's notes, counts, ids or leads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from notes_helpers import local_config, make_note

from retrieval.chunking import Chunker
from retrieval.edge_backend import EdgeBackend
from retrieval.embedder import OnnxEmbedder
from retrieval.filters import Filter, Match
from retrieval.notes import NotesService
from retrieval.report import IndexStatus
from retrieval.store import NotesStore
from retrieval.store_runner import ThreadRunner
from runtimes.errors import NotFound
from runtimes.types import LeadInput

A, B = "tenant-a", "tenant-b"
A_NOTES = [
    make_note("n1", "Inherited a brokerage account and a house in Denver.", lead_id="lead-1"),
    make_note(
        "n2", "Asked about the ten-year rule for inherited IRAs.", lead_id="lead-1", kind="email"
    ),
]


async def test_tenant_b_sees_nothing_of_tenant_a(notes: NotesService) -> None:
    await notes.index(A, A_NOTES, [LeadInput("lead-1", {"inheritance": True})])
    unknown_version = await notes.lead_notes_version(B, "never-seen")

    assert await notes.search(B, "inheritance", top_k=50) == []
    for call in (
        notes.search(B, "inheritance", lead_id="lead-1"),
        notes.delete(B, lead_id="lead-1"),
    ):
        # Exactly what a lead nobody has gets: nothing says tenant A has one.
        with pytest.raises(NotFound) as caught:
            await call
        assert caught.value.message == "lead 'lead-1' not found"
    assert not await notes.lead_exists(B, "lead-1")
    assert await notes.lead_profile(B, "lead-1") is None
    assert await notes.recent_notes(B, "lead-1", 10) == []
    assert await notes.count_notes(B) == await notes.count_points(B) == 0
    assert await notes.count_notes(B, "lead-1") == 0
    assert await notes.lead_notes_version(B, "lead-1") == unknown_version
    assert await notes.delete(B, ["n1", "n2"]) == 0

    # The same note id in tenant B is a new note of B's, and A's note is untouched.
    report = await notes.index(B, [make_note("n1", "Tenant B's own note about a boat.")])
    assert [r.status for r in report.results] == [IndexStatus.ADDED]
    hits = await notes.search(A, "inherited house", top_k=5)
    assert {h.note.note_id for h in hits} == {"n1", "n2"}
    assert all("boat" not in h.note.text for h in hits)
    b_hits = await notes.search(B, "inherited house", top_k=5)
    assert [h.note.text for h in b_hits] == ["Tenant B's own note about a boat."]
    assert await notes.count_notes(A) == 2


class RecordingBackend:
    """Passes every call to the real Edge engine and keeps (method, filter) of each."""

    def __init__(self, backend: EdgeBackend) -> None:
        self._backend = backend
        self.calls: list[tuple[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._backend, name)

        def record(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args))
            return target(*args, **kwargs)

        return record


_FILTERED = {"scroll", "count", "delete", "set_payload", "search"}


def _filters(name: str, args: tuple[Any, ...]) -> list[Filter]:
    if name == "search":
        return [spec.flt for spec in args[0]]
    return [next(a for a in args if isinstance(a, Filter))]


async def test_every_query_carries_the_callers_tenant(
    tmp_path: Path, embedder: OnnxEmbedder
) -> None:
    config = local_config(tmp_path / "data").store
    recorder: list[RecordingBackend] = []

    def factory() -> RecordingBackend:
        recorder.append(RecordingBackend(EdgeBackend(config)))
        return recorder[0]

    runner = ThreadRunner(factory)  # type: ignore[arg-type]
    store = await NotesStore.open_with(runner, dim=embedder.dim, embedder_name=embedder.name)
    notes = NotesService(store, embedder, Chunker())
    try:
        backend = recorder[0]
        backend.calls.clear()  # start-up schema checks are not on a caller's behalf
        long_text = "Discussed estate planning at length. " * 120
        for tenant in (A, B):
            await notes.index(
                tenant,
                [*A_NOTES, make_note("long", long_text)],
                [LeadInput("lead-1", {"age": 50.0})],
            )
            await notes.index(
                tenant,
                [
                    make_note("n1", A_NOTES[0].text, lead_id="lead-2"),
                    make_note("long", "short now"),
                ],
            )
            await notes.search(tenant, "inheritance", lead_id="lead-2", kinds=["call"])
            await notes.search(tenant, "inheritance")
            await notes.recent_notes(tenant, "lead-1", 5)
            await notes.lead_profile(tenant, "lead-1")
            await notes.lead_notes_version(tenant, "lead-1")
            await notes.count_points(tenant)
            await notes.delete(tenant, ["n2"])
            await notes.delete(tenant, lead_id="lead-2")

            calls, backend.calls = backend.calls, []
            assert {name for name, _ in calls} >= _FILTERED | {"upsert"}
            for name, args in calls:
                if name == "upsert":
                    assert all(p.payload["tenant"] == tenant for p in args[1])
                    continue
                assert name in _FILTERED, f"unexpected store call {name}"
                for flt in _filters(name, args):
                    assert flt.must[0] == Match("tenant", tenant), name
    finally:
        await notes.close()
