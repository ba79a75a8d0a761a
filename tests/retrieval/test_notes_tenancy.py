"""Tenants are walls: tenant B never sees tenant A's notes, counts, ids or leads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from notes_helpers import local_settings, make_note
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from retrieval.chunking import Chunker
from retrieval.embedder import OnnxEmbedder
from retrieval.notes import NotesService
from retrieval.report import IndexStatus
from retrieval.store import NotesStore, make_client
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


class RecordingClient:
    """Passes every call to a real client and keeps (method, kwargs) of each."""

    def __init__(self, client: QdrantClient) -> None:
        self._client = client
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._client, name)
        if not callable(target):
            return target

        def record(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, kwargs))
            return target(*args, **kwargs)

        return record


_FILTER_ARGUMENT = {
    "scroll": "scroll_filter",
    "count": "count_filter",
    "delete": "points_selector",
    "set_payload": "points",
    "query_points": "query_filter",
}


async def test_every_query_carries_the_callers_tenant(
    tmp_path: Path, embedder: OnnxEmbedder
) -> None:
    settings = local_settings(tmp_path / "data")
    recorder: list[RecordingClient] = []

    def factory() -> RecordingClient:
        recorder.append(RecordingClient(make_client(settings)))
        return recorder[0]

    store = await NotesStore.open(factory, dim=embedder.dim, embedder_name=embedder.name)
    notes = NotesService(store, embedder, Chunker())
    try:
        client = recorder[0]
        client.calls.clear()  # start-up schema checks are not on a caller's behalf
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

            calls, client.calls = client.calls, []
            assert {name for name, _ in calls} >= set(_FILTER_ARGUMENT) | {"upsert"}
            for name, kwargs in calls:
                if name == "upsert":
                    assert all(p.payload["tenant"] == tenant for p in kwargs["points"])
                    continue
                assert name in _FILTER_ARGUMENT, f"unexpected Qdrant call {name}"
                flt = kwargs[_FILTER_ARGUMENT[name]]
                assert isinstance(flt, qm.Filter), name
                assert flt.must[0] == qm.FieldCondition(
                    key="tenant", match=qm.MatchValue(value=tenant)
                ), name
    finally:
        await notes.close()
