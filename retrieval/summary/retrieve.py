"""Which notes a summary is grounded in: the lead's most relevant and most recent notes, and a
couple of firm documents."""

from __future__ import annotations

import asyncio

from retrieval.types import NoteRecord, NotesReader
from runtimes.types import LeadScore

SUMMARY_TOPICS = "goals, concerns, recent contact, commitments and next steps"


def search_query(score: LeadScore) -> str:
    labels = "; ".join(r.label or r.feature for r in score.reasons)
    return f"{labels}. {SUMMARY_TOPICS}" if labels else SUMMARY_TOPICS


async def retrieve_sources(
    notes: NotesReader,
    tenant: str,
    lead_id: str,
    query: str,
    *,
    top_k: int = 8,
    recent: int = 3,
    firm_docs: int = 2,
) -> list[NoteRecord]:
    """The lead's notes (newest first), then firm documents; no duplicates. The numbering of
    this list is the numbering of the citations."""
    # One embedding and one engine call for both searches; the recent notes run beside it.
    scopes: list[tuple[str | None, int]] = [(lead_id, top_k)]
    if firm_docs:
        scopes.append(("", firm_docs))
    found, latest = await asyncio.gather(
        notes.search_scopes(tenant, query, scopes),
        notes.recent_notes(tenant, lead_id, recent),
    )
    hits, docs = found[0], found[1] if firm_docs else []
    # The store scopes by lead already; checking again costs nothing and keeps another lead's
    # note out of this lead's summary whatever the store does.
    lead_notes: dict[str, NoteRecord] = {}
    for note in [h.note for h in hits] + list(latest):
        if note.lead_id == lead_id:
            lead_notes.setdefault(note.note_id, note)
    ordered = sorted(lead_notes.values(), key=lambda n: n.created_at, reverse=True)
    firm = [h.note for h in docs if h.note.lead_id == "" and h.note.note_id not in lead_notes]
    return ordered + firm[:firm_docs]
