"""Qdrant storage of lead notes and lead profiles, walled by tenant.

One code path for both deployments: :func:`make_client` returns an embedded local-mode client
(files under ``data_dir/qdrant``) or a server client (``qdrant_url``); everything after that is
shared. Every read, count and delete sent on a caller's behalf carries the caller's tenant
condition (built by :func:`tenant_filter`), whatever else the request asks for.

The client is blocking and, in local mode, bound to the thread that opened it (SQLite), so each
:class:`NotesStore` owns one thread that creates, uses and closes the client.
"""

from __future__ import annotations

import asyncio
import uuid
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from qdrant_client import QdrantClient
from qdrant_client import models as qm

from runtimes.errors import FailedPrecondition, Unavailable

if TYPE_CHECKING:
    from gateway.settings import Settings

NOTES = "notes"
LEADS = "leads"
# Fixed namespace: point ids are uuid5(namespace, tenant + note id + chunk), so re-sending a note
# overwrites its points instead of adding new ones, in any process and after any restart.
_POINT_NAMESPACE = uuid.UUID("5f0c7a52-1b8e-4a53-9d7e-2f1f0a6b3c11")
_SEP = "\x1f"
_SCROLL_PAGE = 256

_NOTE_INDEXES: dict[str, qm.PayloadSchemaType | qm.KeywordIndexParams] = {
    # is_tenant lets a Qdrant server co-locate each tenant's points (ignored in local mode).
    "tenant": qm.KeywordIndexParams(type=qm.KeywordIndexType.KEYWORD, is_tenant=True),
    "lead_id": qm.PayloadSchemaType.KEYWORD,
    "note_id": qm.PayloadSchemaType.KEYWORD,
    "kind": qm.PayloadSchemaType.KEYWORD,
    "created_at": qm.PayloadSchemaType.FLOAT,
    "chunk": qm.PayloadSchemaType.INTEGER,
    "embedder": qm.PayloadSchemaType.KEYWORD,
}
_LEAD_INDEXES: dict[str, qm.PayloadSchemaType | qm.KeywordIndexParams] = {
    "tenant": qm.KeywordIndexParams(type=qm.KeywordIndexType.KEYWORD, is_tenant=True),
    "lead_id": qm.PayloadSchemaType.KEYWORD,
}

T = TypeVar("T")


def make_client(settings: Settings) -> QdrantClient:
    """A Qdrant server client when ``qdrant_url`` is set, else embedded local mode on disk."""
    if settings.qdrant_url:
        return QdrantClient(url=settings.qdrant_url, api_key=settings.qdrant_api_key)
    path = settings.data_dir / "qdrant"
    path.mkdir(parents=True, exist_ok=True)
    try:
        return QdrantClient(path=str(path))
    except RuntimeError as exc:
        # Local mode locks its folder: a second process (or a second store) cannot open it.
        raise Unavailable(
            f"Qdrant data folder {path} is in use by another process; run one gateway process "
            "per data_dir, or point LEADGW_QDRANT_URL at a Qdrant server"
        ) from exc


def point_id(tenant: str, note_id: str, chunk: int) -> str:
    return str(uuid.uuid5(_POINT_NAMESPACE, _SEP.join((tenant, note_id, str(chunk)))))


def lead_point_id(tenant: str, lead_id: str) -> str:
    return str(uuid.uuid5(_POINT_NAMESPACE, _SEP.join(("lead", tenant, lead_id))))


def tenant_filter(tenant: str, *must: qm.Condition) -> qm.Filter:
    """The only way this module builds a filter: the tenant condition comes first, always."""
    if not tenant:
        raise ValueError("tenant is required")
    return qm.Filter(must=[_match("tenant", tenant), *must])


def _match(key: str, value: str | int) -> qm.FieldCondition:
    return qm.FieldCondition(key=key, match=qm.MatchValue(value=value))


def _first_chunks(*must: qm.Condition) -> list[qm.Condition]:
    # Chunk 0 stands for the note: one per note, whatever its length.
    return [_match("chunk", 0), *must]


@dataclass(frozen=True, slots=True)
class StoredNote:
    """What the store knows of an indexed note, without its vectors."""

    note_id: str
    lead_id: str
    kind: str
    title: str
    text: str
    created_at: datetime
    chunks: int
    record_hash: str
    text_hash: str

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> StoredNote:
        return cls(
            note_id=payload["note_id"],
            lead_id=payload["lead_id"],
            kind=payload["kind"],
            title=payload.get("title", ""),
            text=payload["text"],
            # The float "created_at" serves range filters; the ISO copy keeps the exact instant.
            created_at=datetime.fromisoformat(payload["created_iso"]),
            chunks=int(payload["chunks"]),
            record_hash=payload["record_hash"],
            text_hash=payload["text_hash"],
        )


@dataclass(frozen=True, slots=True)
class NoteWrite:
    """One note to write: its payload (without tenant/chunk fields) and one vector per chunk."""

    note_id: str
    payload: dict[str, Any]
    chunk_texts: Sequence[str]
    vectors: Sequence[Sequence[float]] | None  # None: text unchanged, rewrite the payload only
    previous_chunks: int  # 0 when the note is new


class NotesStore:
    """Tenant-walled note and profile storage. Async methods; the client lives on one thread."""

    def __init__(self, executor: ThreadPoolExecutor, client: QdrantClient) -> None:
        self._executor = executor
        self._client = client

    @classmethod
    async def open(
        cls,
        client_factory: Callable[[], QdrantClient],
        *,
        dim: int,
        embedder_name: str,
        threads: int = 1,
    ) -> NotesStore:
        """Opens the client on the store's thread and creates collections and indexes if needed.

        ``threads`` > 1 only for a server client: a local-mode client must stay on one thread.
        """
        executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="qdrant")
        loop = asyncio.get_running_loop()
        client: QdrantClient | None = None
        try:
            client = await loop.run_in_executor(executor, client_factory)
            store = cls(executor, client)
            await store._run(store._ensure_schema, dim, embedder_name)
        except BaseException:
            if client is not None:
                # Release the local-mode folder lock now, not whenever the client is collected.
                await loop.run_in_executor(executor, client.close)
            executor.shutdown(wait=False)
            raise
        return store

    async def close(self) -> None:
        await self._run(self._client.close)
        await asyncio.to_thread(self._executor.shutdown, wait=True)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    # ---- schema (start-up only) ----

    def _ensure_schema(self, dim: int, embedder_name: str) -> None:
        client = self._client
        if not client.collection_exists(NOTES):
            client.create_collection(
                NOTES, vectors_config=qm.VectorParams(size=dim, distance=qm.Distance.COSINE)
            )
            self._create_indexes(NOTES, _NOTE_INDEXES)
        else:
            vectors = client.get_collection(NOTES).config.params.vectors
            size = vectors.size if isinstance(vectors, qm.VectorParams) else None
            if size != dim:
                raise FailedPrecondition(
                    f"collection {NOTES!r} holds {size}-dim vectors but the embedder makes "
                    f"{dim}-dim ones; use a new data_dir (or collection) for this embedder"
                )
            # A start-up check across tenants, not a caller's query: are the stored vectors from
            # another model? Mixing models would make every search quietly wrong.
            other, _ = client.scroll(
                NOTES,
                scroll_filter=qm.Filter(must_not=[_match("embedder", embedder_name)]),
                limit=1,
                with_payload=["embedder"],
            )
            if other:
                found = (other[0].payload or {}).get("embedder")
                raise FailedPrecondition(
                    f"notes were embedded with {found!r}, the gateway is configured with "
                    f"{embedder_name!r}; re-index into a new data_dir or switch back"
                )
        if not client.collection_exists(LEADS):
            # Profiles are looked up by id, never by similarity: no vectors at all.
            client.create_collection(LEADS, vectors_config={})
            self._create_indexes(LEADS, _LEAD_INDEXES)

    def _create_indexes(
        self, collection: str, indexes: dict[str, qm.PayloadSchemaType | qm.KeywordIndexParams]
    ) -> None:
        # Local mode ignores payload indexes (and says so once); a server needs them to filter
        # by tenant and lead without scanning.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Payload indexes have no effect")
            for field, schema in indexes.items():
                self._client.create_payload_index(collection, field, field_schema=schema)

    # ---- notes ----

    async def existing(self, tenant: str, note_ids: Iterable[str]) -> dict[str, StoredNote]:
        """The stored notes among ``note_ids`` (chunk 0 payloads), keyed by note id."""
        ids = list(dict.fromkeys(note_ids))
        if not ids:
            return {}
        flt = tenant_filter(
            tenant, *_first_chunks(qm.FieldCondition(key="note_id", match=qm.MatchAny(any=ids)))
        )
        records = await self._run(self._scroll_all, NOTES, flt, True)
        notes = [StoredNote.from_payload(r.payload or {}) for r in records]
        return {note.note_id: note for note in notes}

    async def write(self, tenant: str, writes: Sequence[NoteWrite]) -> None:
        """Upserts the notes' points in one call, then drops chunks a shorter text no longer has."""
        if writes:
            await self._run(self._write, tenant, writes)

    def _write(self, tenant: str, writes: Sequence[NoteWrite]) -> None:
        points: list[qm.PointStruct] = []
        for w in writes:
            if w.vectors is None:
                continue
            for chunk, (vector, text) in enumerate(zip(w.vectors, w.chunk_texts, strict=True)):
                payload = {
                    **w.payload,
                    "tenant": tenant,
                    "chunk": chunk,
                    "chunks": len(w.chunk_texts),
                    "chunk_text": text,
                }
                points.append(
                    qm.PointStruct(
                        id=point_id(tenant, w.note_id, chunk), vector=list(vector), payload=payload
                    )
                )
        if points:
            self._client.upsert(NOTES, points=points, wait=True)
        for w in writes:
            note = _match("note_id", w.note_id)
            if w.vectors is None:
                # Same text, new metadata (lead, kind, date): keep the vectors, rewrite payload.
                self._client.set_payload(
                    NOTES, payload=w.payload, points=tenant_filter(tenant, note), wait=True
                )
            elif w.previous_chunks > len(w.chunk_texts):
                stale = qm.FieldCondition(key="chunk", range=qm.Range(gte=len(w.chunk_texts)))
                self._client.delete(
                    NOTES, points_selector=tenant_filter(tenant, note, stale), wait=True
                )

    async def delete_notes(self, tenant: str, note_ids: Sequence[str]) -> list[StoredNote]:
        """Deletes the notes that exist among ``note_ids``; returns them."""
        found = await self.existing(tenant, note_ids)
        if found:
            flt = tenant_filter(
                tenant, qm.FieldCondition(key="note_id", match=qm.MatchAny(any=list(found)))
            )
            await self._run(self._delete, NOTES, flt)
        return list(found.values())

    async def delete_lead(self, tenant: str, lead_id: str) -> int:
        """Deletes every note of the lead and its profile; returns the number of notes."""
        notes = tenant_filter(tenant, _match("lead_id", lead_id))
        count = await self.count_notes(tenant, lead_id)
        await self._run(self._delete, NOTES, notes)
        await self._run(self._delete, LEADS, tenant_filter(tenant, _match("lead_id", lead_id)))
        return count

    def _delete(self, collection: str, flt: qm.Filter) -> None:
        self._client.delete(collection, points_selector=flt, wait=True)

    async def count_notes(self, tenant: str, lead_id: str | None = None) -> int:
        """Notes (not points) of the tenant, or of one of its leads."""
        must = _first_chunks(*([_match("lead_id", lead_id)] if lead_id is not None else []))
        return await self._run(self._count, NOTES, tenant_filter(tenant, *must))

    async def count_points(self, tenant: str) -> int:
        """Stored points of the tenant: one per chunk of every note."""
        return await self._run(self._count, NOTES, tenant_filter(tenant))

    def _count(self, collection: str, flt: qm.Filter) -> int:
        return self._client.count(collection, count_filter=flt, exact=True).count

    async def search(
        self,
        tenant: str,
        vector: Sequence[float],
        *,
        lead_id: str | None,
        kinds: Sequence[str],
        since: datetime | None,
        until: datetime | None,
        top_k: int,
    ) -> list[tuple[StoredNote, float]]:
        """The ``top_k`` best notes (best chunk per note), best first."""
        must: list[qm.Condition] = []
        if lead_id is not None:
            must.append(_match("lead_id", lead_id))
        if kinds:
            must.append(qm.FieldCondition(key="kind", match=qm.MatchAny(any=list(kinds))))
        if since is not None or until is not None:
            must.append(
                qm.FieldCondition(
                    key="created_at",
                    range=qm.Range(
                        gte=since.timestamp() if since else None,
                        lte=until.timestamp() if until else None,
                    ),
                )
            )
        flt = tenant_filter(tenant, *must)
        points = await self._run(self._search, list(vector), flt, top_k)
        return [(StoredNote.from_payload(p.payload or {}), p.score) for p in points]

    def _search(self, vector: list[float], flt: qm.Filter, top_k: int) -> list[qm.ScoredPoint]:
        # Several chunks of one long note may match; keep each note's best chunk. Plain
        # query_points plus de-duplication is several times faster in local mode than
        # query_points_groups, and most notes are a single chunk, so twice top_k usually suffices.
        limit = top_k * 2
        while True:
            points = self._client.query_points(
                NOTES, query=vector, query_filter=flt, limit=limit, with_payload=True
            ).points
            best: dict[str, qm.ScoredPoint] = {}
            for point in points:
                best.setdefault((point.payload or {})["note_id"], point)
            if len(best) >= top_k or len(points) < limit:
                return list(best.values())[:top_k]
            limit *= 4

    async def recent(self, tenant: str, lead_id: str, limit: int) -> list[StoredNote]:
        """The lead's newest notes, newest first."""
        flt = tenant_filter(tenant, *_first_chunks(_match("lead_id", lead_id)))
        records = await self._run(self._recent, flt, limit)
        return [StoredNote.from_payload(r.payload or {}) for r in records]

    def _recent(self, flt: qm.Filter, limit: int) -> list[qm.Record]:
        records, _ = self._client.scroll(
            NOTES,
            scroll_filter=flt,
            limit=limit,
            order_by=qm.OrderBy(key="created_at", direction=qm.Direction.DESC),
            with_payload=True,
        )
        return records

    async def note_hashes(self, tenant: str, lead_id: str) -> list[tuple[str, str]]:
        """(note id, record hash) of every note of the lead, sorted by note id."""
        flt = tenant_filter(tenant, *_first_chunks(_match("lead_id", lead_id)))
        records = await self._run(self._scroll_all, NOTES, flt, ["note_id", "record_hash"])
        payloads = [r.payload or {} for r in records]
        return sorted((p["note_id"], p["record_hash"]) for p in payloads)

    def _scroll_all(
        self, collection: str, flt: qm.Filter, with_payload: bool | list[str]
    ) -> list[qm.Record]:
        out: list[qm.Record] = []
        offset: Any = None  # the client's own "next page" token, passed back as it came
        while True:
            records, offset = self._client.scroll(
                collection,
                scroll_filter=flt,
                limit=_SCROLL_PAGE,
                offset=offset,
                with_payload=with_payload,
            )
            out.extend(records)
            if offset is None:
                return out

    # ---- lead profiles ----

    async def upsert_profiles(self, tenant: str, profiles: Sequence[dict[str, Any]]) -> None:
        """``profiles``: payloads with lead_id, features and profile_hash."""
        points = [
            qm.PointStruct(
                id=lead_point_id(tenant, p["lead_id"]), vector={}, payload={**p, "tenant": tenant}
            )
            for p in profiles
        ]
        if points:
            await self._run(lambda: self._client.upsert(LEADS, points=points, wait=True))

    async def profile(self, tenant: str, lead_id: str) -> dict[str, Any] | None:
        flt = tenant_filter(tenant, _match("lead_id", lead_id))
        records = await self._run(self._scroll_one, LEADS, flt)
        return dict(records[0].payload or {}) if records else None

    async def lead_has_notes(self, tenant: str, lead_id: str) -> bool:
        # count, not scroll: a local-mode scroll also sorts every point id first.
        flt = tenant_filter(tenant, _match("lead_id", lead_id))
        return await self._run(self._count, NOTES, flt) > 0

    def _scroll_one(self, collection: str, flt: qm.Filter) -> list[qm.Record]:
        records, _ = self._client.scroll(collection, scroll_filter=flt, limit=1, with_payload=True)
        return records
