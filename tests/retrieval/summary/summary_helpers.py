"""Seed data and helpers shared by the summary tests."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from retrieval.summary import Summarizer, SummaryEvent, SummaryResult, TextChunk
from retrieval.types import NoteRecord
from tests.fakes.notes import InMemoryNotes

TENANT = "acme"
OTHER_TENANT = "globex"
LEAD = "lead-1"
PROFILE = {"age": 61.0, "segment": "hnw", "has_pension": True}


def note(note_id: str, lead_id: str, day: int, text: str, kind: str = "call") -> NoteRecord:
    return NoteRecord(note_id, lead_id, kind, text, datetime(2024, 5, day, 9, 30, tzinfo=UTC))


def seed(notes: InMemoryNotes) -> None:
    notes.set_profile(TENANT, LEAD, PROFILE)
    notes.add(
        TENANT,
        note("n-1", LEAD, 1, "First call. Retiring within 5 years and worried about income."),
        note(
            "n-2",
            LEAD,
            8,
            "Emailed from jane.doe@example.com, phone +44 20 7946 0958, account no. 12345678, "
            "card 4111 1111 1111 1111, SSN 123-45-6789.",
            kind="email",
        ),
        note(
            "n-3",
            LEAD,
            15,
            "Meeting booked for June to review pension transfer options.",
            "meeting",
        ),
        note("doc-1", "", 2, "Firm guidance: retirement income planning checklist.", "document"),
    )
    notes.set_profile(OTHER_TENANT, "lead-g", PROFILE)
    notes.add(OTHER_TENANT, note("g-1", "lead-g", 3, "Globex secret: merger next week."))


class ManualClock:
    """For the circuit breaker: time moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def collect(events: AsyncIterator[SummaryEvent]) -> tuple[list[str], SummaryResult]:
    """Every text chunk, then the result; checks the result comes last and only once."""
    chunks: list[str] = []
    result: SummaryResult | None = None
    async for event in events:
        assert result is None, "nothing may follow the final result"
        if isinstance(event, TextChunk):
            chunks.append(event.text)
        else:
            result = event
    assert result is not None, "the stream must end with a result"
    return chunks, result


async def summarize(
    summarizer: Summarizer,
    *,
    tenant: str = TENANT,
    lead_id: str = LEAD,
    features: dict | None = None,
    timeout_s: float = 5.0,
) -> tuple[list[str], SummaryResult]:
    deadline = time.monotonic() + timeout_s
    return await collect(summarizer.summarize(tenant, lead_id, features, deadline=deadline))


# Sentences the guard lets through: each restates its cited seed note ([1] is n-3, [3] is n-1).
MEETING = "A meeting is booked for June to review pension transfer options [1]."
RETIRING = "Retiring soon [3]."


def model_part(text: str) -> str:
    """The summary text after the gateway's facts block (score, reasons, note dates), which
    comes before the first sentence shown from the model."""
    assert text.startswith("Conversion score: "), text[:80]
    return text.split("\n\n", 1)[1]
