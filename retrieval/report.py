"""What an indexing call did, note by note."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class IndexStatus(StrEnum):
    ADDED = "added"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class NoteOutcome:
    note_id: str
    status: IndexStatus
    error: str = ""  # why the note was rejected


@dataclass(frozen=True, slots=True)
class IndexReport:
    """One outcome per note sent, in the order sent."""

    results: list[NoteOutcome] = field(default_factory=list)
    leads_upserted: int = 0

    def count(self, status: IndexStatus) -> int:
        return sum(1 for r in self.results if r.status is status)

    @property
    def added(self) -> int:
        return self.count(IndexStatus.ADDED)

    @property
    def updated(self) -> int:
        return self.count(IndexStatus.UPDATED)

    @property
    def unchanged(self) -> int:
        return self.count(IndexStatus.UNCHANGED)

    @property
    def rejected(self) -> int:
        return self.count(IndexStatus.REJECTED)
