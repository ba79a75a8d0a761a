"""Plain records shared by retrieval, summaries and the gateway's converters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from runtimes.types import FeatureValue

NOTE_KINDS = ("call", "email", "meeting", "event", "document")


@dataclass(frozen=True, slots=True)
class NoteRecord:
    note_id: str
    lead_id: str  # "" for a firm document that belongs to no lead
    kind: str
    text: str
    created_at: datetime  # timezone-aware, UTC
    title: str = ""


@dataclass(frozen=True, slots=True)
class NoteHit:
    note: NoteRecord
    score: float


class NotesReader(Protocol):
    """What summaries need from the notes store. Every call is scoped to one tenant."""

    async def lead_exists(self, tenant: str, lead_id: str) -> bool: ...

    async def lead_profile(self, tenant: str, lead_id: str) -> dict[str, FeatureValue] | None: ...

    async def search(
        self,
        tenant: str,
        query: str,
        *,
        lead_id: str | None = None,
        kinds: Sequence[str] = (),
        since: datetime | None = None,
        until: datetime | None = None,
        top_k: int = 5,
    ) -> list[NoteHit]: ...

    async def search_scopes(
        self, tenant: str, query: str, scopes: Sequence[tuple[str | None, int]]
    ) -> list[list[NoteHit]]:
        """``search`` of one query over several (lead_id, top_k) scopes, in one store call."""
        ...

    async def recent_notes(self, tenant: str, lead_id: str, limit: int) -> list[NoteRecord]: ...

    async def lead_notes_version(self, tenant: str, lead_id: str) -> str:
        """Changes whenever a note of the lead is added, updated or deleted (cache key part)."""
        ...
