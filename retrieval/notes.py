"""The notes core: ingest, delete and search a tenant's lead notes; read lead profiles.

Transport-free: the gateway converts protobuf to these calls. Implements
:class:`retrieval.types.NotesReader` for summaries.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from opentelemetry import trace

from retrieval import validation as v
from retrieval.chunking import Chunker
from retrieval.config import NotesConfig
from retrieval.embedder import Embedder, open_embedder
from retrieval.report import IndexReport, IndexStatus, NoteOutcome
from retrieval.shared_store import StoreLink
from retrieval.store import NoteQuery, NotesStore, NoteWrite, StoredNote
from retrieval.types import NoteHit, NoteRecord
from runtimes.errors import InvalidInput, LeadgwError, NotFound
from runtimes.types import FeatureValue, LeadInput

SearchMode = Literal["hybrid", "dense"]
"""hybrid: meaning and keywords (BM25) fused by reciprocal rank; dense: meaning alone."""
MAX_RECENT = 100
MAX_BATCH = v.MAX_BATCH


@dataclass(frozen=True, slots=True)
class _Pending:
    """A note to write. ``text`` is None when only its metadata changed (no re-embedding)."""

    note_id: str
    payload: dict[str, Any]
    text: str | None
    previous_chunks: int  # 0: the note is new


def _triage(notes: Sequence[NoteRecord]) -> tuple[dict[int, NoteOutcome], dict[int, NoteRecord]]:
    """Rejections by position, and the notes that passed every check (first of any repeats)."""
    rejected: dict[int, NoteOutcome] = {}
    good: dict[int, NoteRecord] = {}
    seen: dict[str, int] = {}
    for i, note in enumerate(notes):
        try:
            v.check_note(note)
            if note.note_id in seen:
                raise InvalidInput(
                    f"note_id repeats notes[{seen[note.note_id]}] of this batch; "
                    "send each note once"
                )
        except LeadgwError as exc:
            rejected[i] = NoteOutcome(note.note_id, IndexStatus.REJECTED, exc.message)
            continue
        seen[note.note_id] = i
        good[i] = note
    return rejected, good


def _sha(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\x1f")
    return digest.hexdigest()


def _embedded_text(note: NoteRecord) -> str:
    # The title is part of what a note means ("Retirement webinar"), so it is embedded too.
    return f"{note.title}\n\n{note.text}" if note.title else note.text


def note_hashes(
    embedder_name: str, embedded_text: str, lead_id: str, kind: str, created_iso: str
) -> tuple[str, str]:
    """(text hash, record hash) of a note's payload: the text hash changes with the text or the
    embedder, the record hash with either or with the lead, kind or date."""
    text_hash = _sha(embedder_name, embedded_text)
    return text_hash, _sha(text_hash, lead_id, kind, created_iso)


def _to_record(stored: StoredNote) -> NoteRecord:
    return NoteRecord(
        note_id=stored.note_id,
        lead_id=stored.lead_id,
        kind=stored.kind,
        text=stored.text,
        created_at=stored.created_at,
        title=stored.title,
    )


class NotesService:
    """Lead notes and profiles in Qdrant, every call scoped to one tenant.

    Writes are serialised within the process so that "is this note new or changed?" and the
    write that follows see the same state.
    """

    def __init__(
        self,
        store: NotesStore,
        embedder: Embedder,
        chunker: Chunker,
        *,
        owns_embedder: bool = False,
    ) -> None:
        self._store = store
        self._embedder = embedder
        self._chunker = chunker
        self._owns_embedder = owns_embedder
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(
        cls,
        config: NotesConfig,
        embedder: Embedder | None = None,
        *,
        shared: StoreLink | None = None,
    ) -> NotesService:
        """Opens the store ``config`` names (``shared``: the Edge store a ``--workers``
        supervisor hosts) and, unless one is given, the embedder.

        An embedder passed in stays the caller's to close; one opened here is closed by
        :meth:`close`.
        """
        owned = embedder is None
        emb = embedder if embedder is not None else await open_embedder(config.embedder)
        try:
            store = await NotesStore.open(
                config.store, dim=emb.dim, embedder_name=emb.name, shared=shared
            )
        except BaseException:
            if owned:
                await emb.close()
            raise
        return cls(store, emb, await asyncio.to_thread(Chunker), owns_embedder=owned)

    @property
    def embedder(self) -> Embedder:
        """The model that embeds notes and queries (this service's to close)."""
        return self._embedder

    async def close(self) -> None:
        await self._store.close()
        if self._owns_embedder:
            await self._embedder.close()

    # ---- writes ----

    async def index(
        self, tenant: str, notes: Sequence[NoteRecord], leads: Sequence[LeadInput] = ()
    ) -> IndexReport:
        """Adds or updates notes (idempotent by note id) and lead profiles.

        Bad notes are rejected one by one with a reason and the rest are indexed. A bad lead
        profile, or more than ``MAX_BATCH`` notes, refuses the whole call (InvalidInput) before
        anything is written. Embedding happens before the first write, so a failing embedder
        leaves the store as it was.
        """
        v.check_tenant(tenant)
        if len(notes) > MAX_BATCH:
            raise InvalidInput(f"{len(notes)} notes in one call; the limit is {MAX_BATCH}")
        profiles = self._checked_profiles(leads)
        outcomes, good = _triage(notes)
        async with self._write_lock:
            existing = await self._store.existing(tenant, [n.note_id for n in good.values()])
            pending: list[_Pending] = []
            for i, note in good.items():
                item = self._pending(note, existing.get(note.note_id))
                if item is None:
                    outcomes[i] = NoteOutcome(note.note_id, IndexStatus.UNCHANGED)
                    continue
                status = IndexStatus.ADDED if item.previous_chunks == 0 else IndexStatus.UPDATED
                outcomes[i] = NoteOutcome(note.note_id, status)
                pending.append(item)
            await self._store.write(tenant, await self._embed(pending))
            await self._store.upsert_profiles(tenant, profiles)
        return IndexReport(
            results=[outcomes[i] for i in range(len(notes))], leads_upserted=len(profiles)
        )

    def _pending(self, note: NoteRecord, old: StoredNote | None) -> _Pending | None:
        """What writing ``note`` takes, or None when the stored copy is identical."""
        text = _embedded_text(note)
        created = note.created_at.astimezone(UTC)
        text_hash, record_hash = note_hashes(
            self._embedder.name, text, note.lead_id, note.kind, created.isoformat()
        )
        if old is not None and old.record_hash == record_hash:
            return None
        payload = {
            "note_id": note.note_id,
            "lead_id": note.lead_id,
            "kind": note.kind,
            "title": note.title,
            "text": note.text,
            # The float serves range filters; the ISO copy keeps the exact instant.
            "created_at": created.timestamp(),
            "created_iso": created.isoformat(),
            "record_hash": record_hash,
            "text_hash": text_hash,
            "embedder": self._embedder.name,
        }
        return _Pending(
            note_id=note.note_id,
            payload=payload,
            # Same text and title under new metadata: the stored vectors still hold.
            text=None if old is not None and old.text_hash == text_hash else text,
            previous_chunks=old.chunks if old is not None else 0,
        )

    async def _embed(self, pending: Sequence[_Pending]) -> list[NoteWrite]:
        """Chunks and embeds every new text in one embedder call; builds the writes."""
        to_embed = [p.text for p in pending if p.text is not None]
        chunked = await asyncio.to_thread(
            lambda: [[c.text for c in self._chunker.split(t)] for t in to_embed]
        )
        vectors = await self._embedder.embed([c for chunks in chunked for c in chunks])
        writes, row, texts = [], 0, iter(chunked)
        for p in pending:
            if p.text is None:
                writes.append(NoteWrite(p.note_id, p.payload, (), None, p.previous_chunks))
                continue
            chunks = next(texts)
            rows = vectors[row : row + len(chunks)].tolist()
            writes.append(NoteWrite(p.note_id, p.payload, chunks, rows, p.previous_chunks))
            row += len(chunks)
        return writes

    @staticmethod
    def _checked_profiles(leads: Sequence[LeadInput]) -> list[dict[str, Any]]:
        profiles: dict[str, dict[str, Any]] = {}
        for i, lead in enumerate(leads):
            v.check_profile(lead.lead_id, lead.features, f"leads[{i}]")
            if lead.lead_id in profiles:
                raise InvalidInput(f"leads[{i}].lead_id {lead.lead_id!r} appears twice")
            features = dict(lead.features)
            profiles[lead.lead_id] = {
                "lead_id": lead.lead_id,
                "features": features,
                "profile_hash": _sha(json.dumps(features, sort_keys=True)),
            }
        return list(profiles.values())

    async def delete(
        self, tenant: str, note_ids: Sequence[str] = (), lead_id: str | None = None
    ) -> int:
        """Deletes notes by id and/or every note (and the profile) of a lead.

        Returns how many notes were deleted. Unknown note ids count as nothing (deleting is
        idempotent); an unknown lead is NotFound.
        """
        v.check_tenant(tenant)
        for i, note_id in enumerate(note_ids):
            v.check_id(note_id, f"note_ids[{i}]")
        if lead_id:
            v.check_id(lead_id, "lead_id")
        if not note_ids and not lead_id:
            raise InvalidInput("nothing to delete: give note_ids or a lead_id")
        async with self._write_lock:
            if lead_id and not await self.lead_exists(tenant, lead_id):
                raise NotFound(f"lead {lead_id!r} not found")
            deleted = len(await self._store.delete_notes(tenant, note_ids)) if note_ids else 0
            if lead_id:
                deleted += await self._store.delete_lead(tenant, lead_id)
        return deleted

    # ---- reads (NotesReader) ----

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
        mode: SearchMode = "hybrid",
    ) -> list[NoteHit]:
        """The tenant's notes that best match ``query``, best first, one hit per note.

        ``mode`` hybrid (the default) ranks by meaning and by keywords (BM25) and fuses both
        rankings by reciprocal rank (score: the fused RRF score); dense ranks by meaning alone
        (score: cosine similarity).

        ``lead_id``: None searches every note of the tenant; ``""`` only the firm documents
        (notes of no lead); an id only that lead's notes, NotFound when the tenant has no such
        lead.
        """
        v.check_tenant(tenant)
        v.check_query(query, top_k)
        kinds = v.check_kinds(kinds)
        v.check_aware(since, "since")
        v.check_aware(until, "until")
        if since is not None and until is not None and since > until:
            raise InvalidInput(f"since ({since.isoformat()}) is after until ({until.isoformat()})")
        if mode not in ("hybrid", "dense"):
            raise InvalidInput(f"search mode {mode!r} is unknown; expected hybrid or dense")
        if lead_id:
            v.check_id(lead_id, "lead_id")
        tracer = trace.get_tracer("leadgw.retrieval")
        with tracer.start_as_current_span("embed query") as span:
            if span.is_recording():
                span.set_attribute("leadgw.embedder", self._embedder.name)
            vector = (await self._embedder.embed([query]))[0]
        with tracer.start_as_current_span("vector search") as span:
            found = await self._store.search(
                tenant,
                vector.tolist(),
                text=query if mode == "hybrid" else None,
                lead_id=lead_id,
                kinds=kinds,
                since=since,
                until=until,
                top_k=top_k,
            )
            if span.is_recording():
                span.set_attributes(
                    {
                        "db.system": "qdrant",
                        "db.operation": "search",
                        "leadgw.search_mode": mode,
                        "leadgw.hits": len(found),
                    }
                )
        # Hits prove the lead exists; only an empty answer needs the (scanning) existence check.
        if lead_id and not found and not await self.lead_exists(tenant, lead_id):
            raise NotFound(f"lead {lead_id!r} not found")
        return [NoteHit(note=_to_record(note), score=float(score)) for note, score in found]

    async def search_scopes(
        self, tenant: str, query: str, scopes: Sequence[tuple[str | None, int]]
    ) -> list[list[NoteHit]]:
        """One query over several scopes ((lead_id, top_k) each, as :meth:`search` takes
        them), hybrid: the query is embedded once and every scope is searched in one engine
        call. A summary's retrieval uses it (the lead's notes and the firm documents)."""
        v.check_tenant(tenant)
        for lead_id, top_k in scopes:
            v.check_query(query, top_k)
            if lead_id:
                v.check_id(lead_id, "lead_id")
        tracer = trace.get_tracer("leadgw.retrieval")
        with tracer.start_as_current_span("embed query"):
            vector = (await self._embedder.embed([query]))[0].tolist()
        with tracer.start_as_current_span("vector search") as span:
            found = await self._store.search_many(
                tenant,
                [
                    NoteQuery(vector=vector, text=query, lead_id=lead_id, top_k=top_k)
                    for lead_id, top_k in scopes
                ],
            )
            if span.is_recording():
                span.set_attributes({"db.system": "qdrant", "db.operation": "search_batch"})
        return [
            [NoteHit(note=_to_record(note), score=float(score)) for note, score in hits]
            for hits in found
        ]

    async def lead_exists(self, tenant: str, lead_id: str) -> bool:
        """True when the tenant has a profile or at least one note for this lead."""
        v.check_tenant(tenant)
        v.check_id(lead_id, "lead_id")
        if await self._store.profile(tenant, lead_id) is not None:
            return True
        return await self._store.lead_has_notes(tenant, lead_id)

    async def lead_profile(self, tenant: str, lead_id: str) -> dict[str, FeatureValue] | None:
        """The lead's stored feature snapshot, or None when none was indexed."""
        v.check_tenant(tenant)
        v.check_id(lead_id, "lead_id")
        profile = await self._store.profile(tenant, lead_id)
        return dict(profile["features"]) if profile is not None else None

    async def recent_notes(self, tenant: str, lead_id: str, limit: int) -> list[NoteRecord]:
        """The lead's newest notes, newest first ([] for a lead the tenant does not have)."""
        v.check_tenant(tenant)
        v.check_id(lead_id, "lead_id")
        if not 1 <= limit <= MAX_RECENT:
            raise InvalidInput(f"limit must be between 1 and {MAX_RECENT}, got {limit}")
        return [_to_record(n) for n in await self._store.recent(tenant, lead_id, limit)]

    async def lead_notes_version(self, tenant: str, lead_id: str) -> str:
        """A digest of the lead's notes and profile: changes when any of them is added, changed
        or deleted, and is the same in every process (it is computed from what is stored)."""
        v.check_tenant(tenant)
        v.check_id(lead_id, "lead_id")
        hashes = await self._store.note_hashes(tenant, lead_id)
        profile = await self._store.profile(tenant, lead_id)
        parts = [f"{note_id}={h}" for note_id, h in hashes]
        parts.append(f"profile={profile['profile_hash'] if profile else ''}")
        return _sha(*parts)[:16]

    # ---- counts (admin, tests, demo loader) ----

    async def count_notes(self, tenant: str, lead_id: str | None = None) -> int:
        v.check_tenant(tenant)
        return await self._store.count_notes(tenant, lead_id)

    async def count_points(self, tenant: str) -> int:
        """Stored vectors: one per chunk of every note."""
        v.check_tenant(tenant)
        return await self._store.count_points(tenant)

    # ---- operations (health check, snapshots) ----

    async def health(self) -> None:
        """Raises ``Unavailable`` when the store cannot answer (after trying to reopen it)."""
        await self._store.health()

    async def snapshot(self, path: Path) -> None:
        """A snapshot of the whole embedded store, every tenant, written to ``path``."""
        await self._store.snapshot(path)

    async def restore(self, path: Path) -> None:
        """Replaces the whole embedded store with the snapshot at ``path``."""
        await self._store.restore(path)
