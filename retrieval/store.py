"""Qdrant storage of lead notes and lead profiles, walled by tenant.

One code path for both deployments: :func:`make_client` returns an embedded local-mode client
(files under ``data_dir/qdrant``) or a server client (``qdrant_url``); everything after that is
shared. Every read, count and delete sent on a caller's behalf carries the caller's tenant
condition (built by :func:`tenant_filter`), whatever else the request asks for.

The client is blocking and, in local mode, bound to the thread that opened it (SQLite) and CPU-bound
(it scans every point in Python). Each :class:`NotesStore` therefore hands its client operations,
module-level functions of plain data, to a runner (:mod:`retrieval.client_runner`): in local mode
one child process that owns the client, so scans never hold the gateway's GIL; with a server, this
process's threads.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from qdrant_client import QdrantClient
from qdrant_client import models as qm

from retrieval.client_runner import ClientRunner, ProcessRunner, ThreadRunner
from retrieval.shared_store import SharedRunner, StoreLink
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
    return open_local_client(settings.data_dir / "qdrant")


def open_local_client(path: Path) -> QdrantClient:
    """Embedded local mode in ``path``. Module-level so that a child process can be sent it."""
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
    """Tenant-walled note and profile storage. Async methods; the client lives in a runner."""

    def __init__(self, runner: ClientRunner) -> None:
        self._runner = runner

    @classmethod
    async def open(
        cls,
        client_factory: Callable[[], QdrantClient],
        *,
        dim: int,
        embedder_name: str,
        threads: int = 1,
    ) -> NotesStore:
        """Opens the client on this process's threads and creates collections if needed.

        ``threads`` > 1 only for a server client: a local-mode client must stay on one thread.
        The gateway uses :meth:`open_for`, which keeps a local-mode client out of its process.
        """
        return await cls._open(ThreadRunner(threads), client_factory, dim, embedder_name)

    @classmethod
    async def open_for(
        cls,
        settings: Settings,
        *,
        dim: int,
        embedder_name: str,
        shared: StoreLink | None = None,
    ) -> NotesStore:
        """The store ``settings`` name: a server client on four threads; or local mode in a
        child process of its own (its scans would otherwise hold this process's GIL); or, for
        a worker of ``serve --workers N`` (``shared``), the local client its supervisor hosts."""
        if settings.qdrant_url:
            factory = partial(make_client, settings)
            return await cls._open(ThreadRunner(4), factory, dim, embedder_name)
        local = partial(open_local_client, settings.data_dir / "qdrant")
        runner: ClientRunner = ProcessRunner() if shared is None else SharedRunner(shared)
        return await cls._open(runner, local, dim, embedder_name)

    @classmethod
    async def _open(
        cls,
        runner: ClientRunner,
        client_factory: Callable[[], QdrantClient],
        dim: int,
        embedder_name: str,
    ) -> NotesStore:
        try:
            await runner.open(client_factory)
            await runner.run(_ensure_schema, dim, embedder_name)
        except BaseException:
            # Release the local-mode folder lock (and the child) now, not at collection.
            await runner.close()
            raise
        return cls(runner)

    @property
    def client_pid(self) -> int:
        """The process that holds the Qdrant client."""
        return self._runner.pid

    async def close(self) -> None:
        await self._runner.close()

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """Runs ``fn(client, *args)`` where the client lives. Plain data in and out."""
        return await self._runner.run(fn, *args)

    # ---- notes ----

    async def existing(self, tenant: str, note_ids: Iterable[str]) -> dict[str, StoredNote]:
        """The stored notes among ``note_ids`` (chunk 0 payloads), keyed by note id."""
        ids = list(dict.fromkeys(note_ids))
        if not ids:
            return {}
        flt = tenant_filter(
            tenant, *_first_chunks(qm.FieldCondition(key="note_id", match=qm.MatchAny(any=ids)))
        )
        payloads = await self._run(_scroll_all, NOTES, flt, True)
        notes = [StoredNote.from_payload(p) for p in payloads]
        return {note.note_id: note for note in notes}

    async def write(self, tenant: str, writes: Sequence[NoteWrite]) -> None:
        """Upserts the notes' points in one call, then drops chunks a shorter text no longer has."""
        if writes:
            await self._run(_write, tenant, list(writes))

    async def delete_notes(self, tenant: str, note_ids: Sequence[str]) -> list[StoredNote]:
        """Deletes the notes that exist among ``note_ids``; returns them."""
        found = await self.existing(tenant, note_ids)
        if found:
            flt = tenant_filter(
                tenant, qm.FieldCondition(key="note_id", match=qm.MatchAny(any=list(found)))
            )
            await self._run(_delete, NOTES, flt)
        return list(found.values())

    async def delete_lead(self, tenant: str, lead_id: str) -> int:
        """Deletes every note of the lead and its profile; returns the number of notes."""
        notes = tenant_filter(tenant, _match("lead_id", lead_id))
        count = await self.count_notes(tenant, lead_id)
        await self._run(_delete, NOTES, notes)
        await self._run(_delete, LEADS, tenant_filter(tenant, _match("lead_id", lead_id)))
        return count

    async def count_notes(self, tenant: str, lead_id: str | None = None) -> int:
        """Notes (not points) of the tenant, or of one of its leads."""
        must = _first_chunks(*([_match("lead_id", lead_id)] if lead_id is not None else []))
        return await self._run(_count, NOTES, tenant_filter(tenant, *must))

    async def count_points(self, tenant: str) -> int:
        """Stored points of the tenant: one per chunk of every note."""
        return await self._run(_count, NOTES, tenant_filter(tenant))

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
        found = await self._run(_search, [float(x) for x in vector], flt, top_k)
        return [(StoredNote.from_payload(payload), score) for payload, score in found]

    async def recent(self, tenant: str, lead_id: str, limit: int) -> list[StoredNote]:
        """The lead's newest notes, newest first."""
        flt = tenant_filter(tenant, *_first_chunks(_match("lead_id", lead_id)))
        payloads = await self._run(_recent, flt, limit)
        return [StoredNote.from_payload(p) for p in payloads]

    async def note_hashes(self, tenant: str, lead_id: str) -> list[tuple[str, str]]:
        """(note id, record hash) of every note of the lead, sorted by note id."""
        flt = tenant_filter(tenant, *_first_chunks(_match("lead_id", lead_id)))
        payloads = await self._run(_scroll_all, NOTES, flt, ["note_id", "record_hash"])
        return sorted((p["note_id"], p["record_hash"]) for p in payloads)

    # ---- lead profiles ----

    async def upsert_profiles(self, tenant: str, profiles: Sequence[dict[str, Any]]) -> None:
        """``profiles``: payloads with lead_id, features and profile_hash."""
        if profiles:
            await self._run(_upsert_profiles, tenant, [dict(p) for p in profiles])

    async def profile(self, tenant: str, lead_id: str) -> dict[str, Any] | None:
        flt = tenant_filter(tenant, _match("lead_id", lead_id))
        return await self._run(_scroll_one, LEADS, flt)

    async def lead_has_notes(self, tenant: str, lead_id: str) -> bool:
        # count, not scroll: a local-mode scroll also sorts every point id first.
        flt = tenant_filter(tenant, _match("lead_id", lead_id))
        return await self._run(_count, NOTES, flt) > 0


# ---- operations: run where the client lives, so module-level, and plain data out ----
# Filters go in as qdrant models (small, picklable pydantic objects) so that tenant_filter, in
# the caller's process, stays the only place a filter is built.


def _ensure_schema(client: QdrantClient, dim: int, embedder_name: str) -> None:
    if not client.collection_exists(NOTES):
        client.create_collection(
            NOTES, vectors_config=qm.VectorParams(size=dim, distance=qm.Distance.COSINE)
        )
        _create_indexes(client, NOTES, _NOTE_INDEXES)
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
        _create_indexes(client, LEADS, _LEAD_INDEXES)


def _create_indexes(
    client: QdrantClient,
    collection: str,
    indexes: dict[str, qm.PayloadSchemaType | qm.KeywordIndexParams],
) -> None:
    # Local mode ignores payload indexes (and says so once); a server needs them to filter
    # by tenant and lead without scanning.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Payload indexes have no effect")
        for field, schema in indexes.items():
            client.create_payload_index(collection, field, field_schema=schema)


def _write(client: QdrantClient, tenant: str, writes: Sequence[NoteWrite]) -> None:
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
        client.upsert(NOTES, points=points, wait=True)
    for w in writes:
        note = _match("note_id", w.note_id)
        if w.vectors is None:
            # Same text, new metadata (lead, kind, date): keep the vectors, rewrite payload.
            client.set_payload(
                NOTES, payload=w.payload, points=tenant_filter(tenant, note), wait=True
            )
        elif w.previous_chunks > len(w.chunk_texts):
            stale = qm.FieldCondition(key="chunk", range=qm.Range(gte=len(w.chunk_texts)))
            client.delete(NOTES, points_selector=tenant_filter(tenant, note, stale), wait=True)


def _delete(client: QdrantClient, collection: str, flt: qm.Filter) -> None:
    client.delete(collection, points_selector=flt, wait=True)


def _count(client: QdrantClient, collection: str, flt: qm.Filter) -> int:
    return client.count(collection, count_filter=flt, exact=True).count


def _search(
    client: QdrantClient, vector: list[float], flt: qm.Filter, top_k: int
) -> list[tuple[dict[str, Any], float]]:
    # Several chunks of one long note may match; keep each note's best chunk. Plain
    # query_points plus de-duplication is several times faster in local mode than
    # query_points_groups, and most notes are a single chunk, so twice top_k usually suffices.
    limit = top_k * 2
    while True:
        points = client.query_points(
            NOTES, query=vector, query_filter=flt, limit=limit, with_payload=True
        ).points
        best: dict[str, tuple[dict[str, Any], float]] = {}
        for point in points:
            payload = point.payload or {}
            best.setdefault(payload["note_id"], (payload, point.score))
        if len(best) >= top_k or len(points) < limit:
            return list(best.values())[:top_k]
        limit *= 4


def _recent(client: QdrantClient, flt: qm.Filter, limit: int) -> list[dict[str, Any]]:
    records, _ = client.scroll(
        NOTES,
        scroll_filter=flt,
        limit=limit,
        order_by=qm.OrderBy(key="created_at", direction=qm.Direction.DESC),
        with_payload=True,
    )
    return [r.payload or {} for r in records]


def _scroll_all(
    client: QdrantClient, collection: str, flt: qm.Filter, with_payload: bool | list[str]
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    offset: Any = None  # the client's own "next page" token, passed back as it came
    while True:
        records, offset = client.scroll(
            collection,
            scroll_filter=flt,
            limit=_SCROLL_PAGE,
            offset=offset,
            with_payload=with_payload,
        )
        out.extend(r.payload or {} for r in records)
        if offset is None:
            return out


def _scroll_one(client: QdrantClient, collection: str, flt: qm.Filter) -> dict[str, Any] | None:
    records, _ = client.scroll(collection, scroll_filter=flt, limit=1, with_payload=True)
    return dict(records[0].payload or {}) if records else None


def _upsert_profiles(client: QdrantClient, tenant: str, profiles: list[dict[str, Any]]) -> None:
    points = [
        qm.PointStruct(
            id=lead_point_id(tenant, p["lead_id"]), vector={}, payload={**p, "tenant": tenant}
        )
        for p in profiles
    ]
    client.upsert(LEADS, points=points, wait=True)
