"""``search_scopes``: one embedding and one engine call answer as the separate searches do."""

from __future__ import annotations

from notes_helpers import make_note

from retrieval.notes import NotesService
from retrieval.types import NoteRecord

T = "acme"


async def test_scopes_answer_as_separate_searches(notes: NotesService) -> None:
    await notes.index(
        T,
        [
            make_note("a1", "Wants to roll over a 401k into an IRA.", lead_id="lead-a"),
            make_note("a2", "Asked about annuity fees.", lead_id="lead-a", days_ago=3),
            make_note("b1", "Retirement income planning for a couple.", lead_id="lead-b"),
            NoteRecord(
                "doc-1",
                "",
                "document",
                "Our fee schedule for annuities.",
                make_note("x", "x").created_at,
                "Fees",
            ),
        ],
    )
    query = "annuity fees and retirement"
    lead_hits, firm_hits = await notes.search_scopes(T, query, [("lead-a", 5), ("", 2)])
    alone_lead = await notes.search(T, query, lead_id="lead-a", top_k=5)
    alone_firm = await notes.search(T, query, lead_id="", top_k=2)
    assert [h.note.note_id for h in lead_hits] == [h.note.note_id for h in alone_lead]
    assert [h.note.note_id for h in firm_hits] == [h.note.note_id for h in alone_firm] == ["doc-1"]
    assert {h.note.lead_id for h in lead_hits} == {"lead-a"}


async def test_scopes_stay_inside_the_tenant(notes: NotesService) -> None:
    await notes.index("other", [make_note("o1", "Annuity fees question.", lead_id="lead-a")])
    (hits,) = await notes.search_scopes(T, "annuity fees", [("lead-a", 5)])
    assert hits == []
