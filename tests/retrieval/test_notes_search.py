"""Search by meaning with lead, kind and time filters; one hit per note, best first."""

from __future__ import annotations

from datetime import timedelta

import pytest
from notes_helpers import NOW, make_note

from retrieval.notes import NotesService
from retrieval.types import NoteRecord
from runtimes.errors import InvalidInput, NotFound

T = "acme"
CORPUS = [
    make_note(
        "r1", "Plans to retire next year and asked about Social Security timing.", days_ago=30
    ),
    make_note(
        "r2",
        "Used the retirement calculator: projected income shortfall.",
        kind="event",
        days_ago=5,
    ),
    make_note("r3", "Emailed asking how to roll over the old 401k.", kind="email", days_ago=1),
    make_note(
        "b1", "Just had a baby; interested in a 529 college plan.", lead_id="lead-2", days_ago=10
    ),
    NoteRecord(
        "doc-fees",
        "",
        "document",
        "Advisory fee schedule: 0.9 percent a year.",
        NOW - timedelta(days=300),
        "Fee schedule",
    ),
]


@pytest.fixture
async def indexed(notes: NotesService) -> NotesService:
    report = await notes.index(T, CORPUS)
    assert report.added == len(CORPUS)
    return notes


async def test_best_match_first(indexed: NotesService) -> None:
    hits = await indexed.search(T, "when should I claim social security", top_k=5)
    assert hits[0].note.note_id == "r1"
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert len({h.note.note_id for h in hits}) == len(hits) == 5


async def test_firm_documents_are_searchable_without_a_lead(indexed: NotesService) -> None:
    hits = await indexed.search(T, "how much are your fees", top_k=1)
    assert hits[0].note.note_id == "doc-fees"
    assert hits[0].note.lead_id == ""
    assert hits[0].note.title == "Fee schedule"


async def test_lead_filter(indexed: NotesService) -> None:
    hits = await indexed.search(T, "college savings for a newborn", lead_id="lead-1", top_k=10)
    assert {h.note.note_id for h in hits} == {"r1", "r2", "r3"}
    with pytest.raises(NotFound, match="lead 'lead-404' not found"):
        await indexed.search(T, "anything", lead_id="lead-404")


async def test_kind_and_time_filters(indexed: NotesService) -> None:
    hits = await indexed.search(T, "retirement", kinds=["event", "email"], top_k=10)
    assert {h.note.note_id for h in hits} == {"r2", "r3"}
    recent = await indexed.search(T, "retirement", since=NOW - timedelta(days=7), top_k=10)
    assert {h.note.note_id for h in recent} == {"r2", "r3"}
    window = await indexed.search(
        T, "retirement", since=NOW - timedelta(days=40), until=NOW - timedelta(days=8), top_k=10
    )
    assert {h.note.note_id for h in window} == {"r1", "b1"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"top_k": 0}, "top_k must be between 1 and 50, got 0"),
        ({"top_k": 51}, "top_k must be between 1 and 50, got 51"),
        ({"kinds": ["sms"]}, "kind 'sms' is unknown"),
        ({"since": NOW, "until": NOW - timedelta(days=1)}, "since .* is after until"),
        ({"since": NOW.replace(tzinfo=None)}, "since has no time zone"),
        ({"lead_id": "bad id!"}, "lead_id 'bad id!' has characters outside"),
    ],
)
async def test_bad_search_requests(indexed: NotesService, kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        await indexed.search(T, "retirement", **kwargs)


@pytest.mark.parametrize(
    ("query", "message"), [("   ", "query is empty"), ("x" * 2001, "query has 2001 characters")]
)
async def test_bad_queries(indexed: NotesService, query: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        await indexed.search(T, query)


async def test_empty_lead_id_means_firm_documents_only(indexed: NotesService) -> None:
    hits = await indexed.search(T, "retirement and social security", lead_id="", top_k=5)
    assert [h.note.note_id for h in hits] == ["doc-fees"]
    everything = await indexed.search(T, "retirement and social security", top_k=5)
    assert len(everything) == 5
