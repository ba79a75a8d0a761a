"""An in-memory ``NotesReader`` for pipeline tests: tenant-scoped, with a notes version."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from retrieval.types import NoteHit, NoteRecord
from runtimes.errors import Unavailable
from runtimes.types import FeatureValue


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


class InMemoryNotes:
    def __init__(self) -> None:
        self._notes: dict[str, dict[str, NoteRecord]] = {}
        self._profiles: dict[tuple[str, str], dict[str, FeatureValue]] = {}
        self._versions: Counter[tuple[str, str]] = Counter()
        self.fail_search = False
        self.bug_in_search = False
        self.calls: list[str] = []  # the store calls a test made, by name

    def add(self, tenant: str, *notes: NoteRecord) -> None:
        for note in notes:
            self._notes.setdefault(tenant, {})[note.note_id] = note
            self._versions[(tenant, note.lead_id)] += 1

    def set_profile(self, tenant: str, lead_id: str, features: dict[str, FeatureValue]) -> None:
        self._profiles[(tenant, lead_id)] = features

    async def lead_exists(self, tenant: str, lead_id: str) -> bool:
        if (tenant, lead_id) in self._profiles:
            return True
        return any(n.lead_id == lead_id for n in self._notes.get(tenant, {}).values())

    async def lead_profile(self, tenant: str, lead_id: str) -> dict[str, FeatureValue] | None:
        return self._profiles.get((tenant, lead_id))

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
    ) -> list[NoteHit]:
        self.calls.append("search")
        return self._search(tenant, query, lead_id, kinds, since, until, top_k)

    async def search_scopes(
        self, tenant: str, query: str, scopes: Sequence[tuple[str | None, int]]
    ) -> list[list[NoteHit]]:
        self.calls.append("search_scopes")
        return [self._search(tenant, query, lead_id, (), None, None, k) for lead_id, k in scopes]

    def _search(
        self,
        tenant: str,
        query: str,
        lead_id: str | None,
        kinds: Sequence[str],
        since: datetime | None,
        until: datetime | None,
        top_k: int,
    ) -> list[NoteHit]:
        if self.fail_search:
            raise Unavailable("notes store is unavailable")
        if self.bug_in_search:
            raise RuntimeError("a bug in the store adapter")
        wanted = _words(query)
        hits = []
        for note in self._notes.get(tenant, {}).values():
            if lead_id is not None and note.lead_id != lead_id:
                continue
            if (kinds and note.kind not in kinds) or (since and note.created_at < since):
                continue
            if until and note.created_at > until:
                continue
            overlap = len(wanted & _words(note.text + " " + note.title))
            hits.append(NoteHit(note, overlap / (1 + len(wanted))))
        hits.sort(key=lambda h: (h.score, h.note.created_at), reverse=True)
        return hits[:top_k]

    async def recent_notes(self, tenant: str, lead_id: str, limit: int) -> list[NoteRecord]:
        notes = [n for n in self._notes.get(tenant, {}).values() if n.lead_id == lead_id]
        notes.sort(key=lambda n: n.created_at, reverse=True)
        return notes[:limit]

    async def lead_notes_version(self, tenant: str, lead_id: str) -> str:
        return str(self._versions[(tenant, lead_id)])
