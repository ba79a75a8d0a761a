"""Ingestion: idempotent by note id, changed text re-embedded, deletes, long notes, restarts."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from notes_helpers import NOW, local_config, make_note

from retrieval.embedder import OnnxEmbedder
from retrieval.notes import NotesService
from retrieval.report import IndexStatus
from retrieval.store import NotesStore
from runtimes.errors import FailedPrecondition, InvalidInput, NotFound, Unavailable
from runtimes.types import LeadInput

T = "acme"
NOTES = [
    make_note("n1", "Client asked about rolling over her 401k to an IRA.", days_ago=3),
    make_note("n2", "Attended the retirement income webinar.", kind="event", days_ago=2),
    make_note("n3", "New baby; wants to open a 529 college savings plan.", lead_id="lead-2"),
]


def statuses(report) -> list[IndexStatus]:
    return [r.status for r in report.results]


async def test_reindexing_the_same_notes_changes_nothing(notes: NotesService) -> None:
    first = await notes.index(T, NOTES)
    assert statuses(first) == [IndexStatus.ADDED] * 3
    points = await notes.count_points(T)
    version = await notes.lead_notes_version(T, "lead-1")

    second = await notes.index(T, NOTES)
    assert statuses(second) == [IndexStatus.UNCHANGED] * 3
    assert (second.added, second.updated, second.unchanged) == (0, 0, 3)
    assert await notes.count_points(T) == points == 3
    assert await notes.lead_notes_version(T, "lead-1") == version


async def test_changed_text_is_reembedded_and_found(notes: NotesService) -> None:
    await notes.index(T, NOTES)
    before = await notes.lead_notes_version(T, "lead-1")
    changed = replace(NOTES[0], text="Wants to buy a sailing boat next summer.")
    report = await notes.index(T, [changed, NOTES[1]])
    assert statuses(report) == [IndexStatus.UPDATED, IndexStatus.UNCHANGED]
    assert await notes.count_points(T) == 3
    assert await notes.lead_notes_version(T, "lead-1") != before

    hits = await notes.search(T, "boat for sailing", top_k=1)
    assert hits[0].note.note_id == "n1"
    assert hits[0].note.text == changed.text
    # The stored vector is the new text's: close in meaning (cosine), not only in words.
    dense = await notes.search(T, "boat for sailing", top_k=1, mode="dense")
    assert dense[0].note.note_id == "n1"
    assert dense[0].score > 0.5


async def test_changed_metadata_keeps_vectors_and_moves_the_note(notes: NotesService) -> None:
    await notes.index(T, NOTES)
    moved = replace(NOTES[0], lead_id="lead-2", created_at=NOW)
    assert statuses(await notes.index(T, [moved])) == [IndexStatus.UPDATED]
    hits = await notes.search(T, "401k rollover", lead_id="lead-2", top_k=5)
    assert hits[0].note.note_id == "n1"
    assert hits[0].note.created_at == NOW
    assert await notes.count_notes(T, "lead-1") == 1


async def test_delete_by_id_and_by_lead(notes: NotesService) -> None:
    await notes.index(T, NOTES, [LeadInput("lead-1", {"age": 61.0})])
    before = await notes.lead_notes_version(T, "lead-1")
    # Unknown ids count as nothing: deleting is idempotent.
    assert await notes.delete(T, ["n2", "no-such-note"]) == 1
    assert await notes.lead_notes_version(T, "lead-1") != before
    assert await notes.count_notes(T) == 2
    assert {h.note.note_id for h in await notes.search(T, "webinar", top_k=5)} == {"n1", "n3"}
    assert await notes.delete(T, lead_id="lead-1") == 1
    assert not await notes.lead_exists(T, "lead-1")
    assert await notes.lead_profile(T, "lead-1") is None
    assert await notes.count_notes(T) == 1
    with pytest.raises(NotFound, match="lead 'lead-1' not found"):
        await notes.delete(T, lead_id="lead-1")
    with pytest.raises(InvalidInput, match="nothing to delete"):
        await notes.delete(T)


async def test_long_note_is_chunked_and_found_by_its_end(notes: NotesService) -> None:
    filler = " ".join(f"Reviewed account statement number {i} in detail." for i in range(120))
    long_text = filler + " Finally, the client mentioned a new child arriving in March."
    report = await notes.index(T, [make_note("long", long_text)])
    assert statuses(report) == [IndexStatus.ADDED]
    chunks = await notes.count_points(T)
    assert chunks > 1
    assert await notes.count_notes(T) == 1

    hits = await notes.search(T, "expecting a baby", top_k=3)
    # One hit per note even though several of its chunks match, with the whole text.
    assert [h.note.note_id for h in hits] == ["long"]
    assert hits[0].note.text == long_text

    # Shortened: the chunks the short text no longer has are removed.
    await notes.index(T, [make_note("long", "Now a short note.")])
    assert await notes.count_points(T) == 1


async def test_data_survives_a_restart(tmp_path: Path, embedder: OnnxEmbedder) -> None:
    settings = local_config(tmp_path / "data")
    first = await NotesService.open(settings, embedder=embedder)
    await first.index(T, NOTES, [LeadInput("lead-1", {"age": 61.0, "channel": "web"})])
    version = await first.lead_notes_version(T, "lead-1")
    await first.close()

    second = await NotesService.open(settings, embedder=embedder)
    try:
        assert await second.count_notes(T) == 3
        assert await second.lead_profile(T, "lead-1") == {"age": 61.0, "channel": "web"}
        assert await second.lead_notes_version(T, "lead-1") == version
        assert statuses(await second.index(T, NOTES)) == [IndexStatus.UNCHANGED] * 3
        hits = await second.search(T, "college savings for the baby", top_k=1)
        assert hits[0].note.note_id == "n3"
    finally:
        await second.close()


async def test_profiles_and_lead_existence(notes: NotesService) -> None:
    profile = {"age": 44.0, "inheritance": True, "channel": "referral", "household_income": None}
    report = await notes.index(T, [], [LeadInput("lead-9", profile)])
    assert report.leads_upserted == 1
    assert await notes.lead_exists(T, "lead-9")  # a profile alone makes a lead known
    assert await notes.lead_profile(T, "lead-9") == profile
    assert not await notes.lead_exists(T, "lead-1")
    await notes.index(T, NOTES[:1])
    assert await notes.lead_exists(T, "lead-1")  # so do notes alone
    assert await notes.lead_profile(T, "lead-1") is None

    before = await notes.lead_notes_version(T, "lead-9")
    await notes.index(T, [], [LeadInput("lead-9", {**profile, "age": 45.0})])
    assert await notes.lead_notes_version(T, "lead-9") != before


async def test_recent_notes_newest_first(notes: NotesService) -> None:
    await notes.index(T, NOTES)
    recent = await notes.recent_notes(T, "lead-1", 5)
    assert [n.note_id for n in recent] == ["n2", "n1"]
    assert recent[0].created_at == NOTES[1].created_at
    assert [n.note_id for n in await notes.recent_notes(T, "lead-1", 1)] == ["n2"]
    assert await notes.recent_notes(T, "nobody", 5) == []
    with pytest.raises(InvalidInput, match="limit must be between 1 and 100, got 0"):
        await notes.recent_notes(T, "lead-1", 0)


async def test_reopening_with_another_embedder_is_refused(
    tmp_path: Path, embedder: OnnxEmbedder
) -> None:
    config = local_config(tmp_path / "data")
    first = await NotesService.open(config, embedder=embedder)
    await first.index(T, NOTES[:1])
    await first.close()
    store = config.store

    with pytest.raises(FailedPrecondition, match="holds 384-dim vectors but the embedder makes"):
        await NotesStore.open(store, dim=768, embedder_name=embedder.name)
    with pytest.raises(FailedPrecondition, match="notes were embedded with 'all-MiniLM-L6-v2"):
        await NotesStore.open(store, dim=384, embedder_name="openai:other-model")
    # The refused opens released the shard: the right embedder opens it again.
    again = await NotesStore.open(store, dim=384, embedder_name=embedder.name)
    assert await again.count_notes(T) == 1
    await again.close()


async def test_a_second_process_on_the_same_folder_is_refused(
    notes: NotesService, tmp_path: Path, embedder: OnnxEmbedder
) -> None:
    # The `notes` fixture holds tmp_path / "data"; Qdrant Edge locks its shard.
    with pytest.raises(Unavailable, match="is in use by another process"):
        await NotesService.open(local_config(tmp_path / "data"), embedder=embedder)
    assert await notes.count_notes(T) == 0  # the holder is unaffected
