"""Storage of lead notes and lead profiles, walled by tenant, on a Qdrant engine.

One code path for every deployment: the embedded Qdrant Edge shards under ``data_dir`` (the
default), the same shards hosted for ``serve --workers N`` by the supervisor's store host, or a
Qdrant server (``qdrant_url``). Everything above the engine is shared: ids, payloads, and the
filters, built only by :func:`retrieval.filters.tenant_filter`, so every read, count and delete
sent on a caller's behalf carries the caller's tenant condition whatever else it asks for.

Each engine call runs where the engine lives (:mod:`retrieval.store_runner`), bounded by a
timeout, inside a span and timed into the ``leadgw.notes.store.duration`` histogram. Searches
are also timed where the engine runs, into ``leadgw.notes.engine.duration``: the engine's own
time, without the hop to its thread (or to the store host) and back.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from opentelemetry import metrics, trace

from retrieval.backend import LEADS, NOTES, Payload, PointWrite, SearchSpec, StoreBackend
from retrieval.config import StoreConfig
from retrieval.filters import (
    Condition,
    Filter,
    Match,
    MatchAny,
    Range,
    tenant_filter,
    unscoped_filter,
)
from retrieval.shared_store import SharedRunner, StoreLink, open_edge
from retrieval.store_runner import StoreRunner, ThreadRunner
from runtimes.errors import FailedPrecondition, LeadgwError, Unavailable

# Fixed namespace: point ids are uuid5(namespace, tenant + note id + chunk), so re-sending a note
# overwrites its points instead of adding new ones, in any process and after any restart.
_POINT_NAMESPACE = uuid.UUID("5f0c7a52-1b8e-4a53-9d7e-2f1f0a6b3c11")
_SEP = "\x1f"
_OPEN_TIMEOUT_S = 600.0
"""Opening may migrate a local-mode data dir or build an index: generous, but bounded."""

T = TypeVar("T")


def point_id(tenant: str, note_id: str, chunk: int) -> str:
    return str(uuid.uuid5(_POINT_NAMESPACE, _SEP.join((tenant, note_id, str(chunk)))))


def lead_point_id(tenant: str, lead_id: str) -> str:
    return str(uuid.uuid5(_POINT_NAMESPACE, _SEP.join(("lead", tenant, lead_id))))


def _first_chunks(*must: Condition) -> list[Condition]:
    # Chunk 0 stands for the note: one per note, whatever its length.
    return [Match("chunk", 0), *must]


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


@dataclass(frozen=True, slots=True)
class NoteQuery:
    """One search of :meth:`NotesStore.search_many`."""

    vector: Sequence[float]
    text: str | None  # the query's words, for keyword matching; None: meaning only
    lead_id: str | None = None
    kinds: Sequence[str] = ()
    since: datetime | None = None
    until: datetime | None = None
    top_k: int = 5


def runner_for(config: StoreConfig, shared: StoreLink | None = None) -> StoreRunner:
    """A Qdrant server's client on four threads; the Edge store a ``--workers`` supervisor hosts
    (``shared``); or the Edge store in this process."""
    if config.qdrant_url:
        from retrieval.server_backend import ServerBackend

        url, key = config.qdrant_url, config.qdrant_api_key
        return ThreadRunner(partial(ServerBackend.connect, url, key), threads=4)
    if shared is not None:
        return SharedRunner(shared)
    return ThreadRunner(partial(open_edge, config), threads=2)


class NotesStore:
    """Tenant-walled note and profile storage. Async methods; the engine lives in a runner."""

    def __init__(self, runner: StoreRunner, *, timeout_s: float = 5.0) -> None:
        self._runner = runner
        self._timeout_s = timeout_s
        self._tracer = trace.get_tracer("leadgw.retrieval")
        self._duration = metrics.get_meter("leadgw.retrieval").create_histogram(
            "leadgw.notes.store.duration", unit="s", description="Notes store calls, by operation"
        )
        self._engine_duration = metrics.get_meter("leadgw.retrieval").create_histogram(
            "leadgw.notes.engine.duration",
            unit="s",
            description="Notes searches, timed where the engine runs (no hop to it and back)",
        )
        self._schema: tuple[int, str] | None = None

    @classmethod
    async def open(
        cls,
        config: StoreConfig,
        *,
        dim: int,
        embedder_name: str,
        shared: StoreLink | None = None,
    ) -> NotesStore:
        """The store ``config`` names (see :func:`runner_for`), its collections created or
        checked against the embedder."""
        return await cls.open_with(
            runner_for(config, shared),
            dim=dim,
            embedder_name=embedder_name,
            timeout_s=config.call_timeout_s,
        )

    @classmethod
    async def open_with(
        cls, runner: StoreRunner, *, dim: int, embedder_name: str, timeout_s: float = 5.0
    ) -> NotesStore:
        """The store on a given runner (tests hand it any engine through a ThreadRunner)."""
        store = cls(runner, timeout_s=timeout_s)
        try:
            await runner.open()
            await store._ensure_schema(dim, embedder_name)
        except BaseException:
            # Release the shard's lock now, not at collection.
            await runner.close()
            raise
        return store

    async def _ensure_schema(self, dim: int, embedder_name: str) -> None:
        await self._runner.run(_ensure_schema, dim, embedder_name, timeout_s=_OPEN_TIMEOUT_S)
        self._schema = (dim, embedder_name)

    @property
    def embedder_name(self) -> str:
        """The embedder whose vectors this store holds (checked as it opened)."""
        if self._schema is None:
            raise RuntimeError("the store is not open")
        return self._schema[1]

    @property
    def client_pid(self) -> int:
        """The process that holds the engine."""
        return self._runner.pid

    async def close(self) -> None:
        await self._runner.close()

    async def _run(self, fn: Callable[..., T], *args: Any, timeout_s: float | None = None) -> T:
        """Runs ``fn(backend, *args)`` where the engine lives, bounded, traced and timed."""
        name = fn.__name__.strip("_")
        started = time.perf_counter()
        outcome = "ok"
        with self._tracer.start_as_current_span(f"notes store {name}") as span:
            if span.is_recording():
                span.set_attributes({"db.system": "qdrant", "db.operation": name})
            try:
                return await self._runner.run(fn, *args, timeout_s=timeout_s or self._timeout_s)
            except LeadgwError:
                outcome = "error"
                raise
            finally:
                self._duration.record(
                    time.perf_counter() - started, {"operation": name, "outcome": outcome}
                )

    # ---- health, snapshots ----

    async def health(self) -> None:
        """Raises ``Unavailable`` when the engine does not answer; reopens it first (a store
        that died comes back by itself), so a later check can pass."""
        try:
            await self._run(_health, timeout_s=min(self._timeout_s, 2.0))
        except Unavailable:
            if self._schema is None:
                raise
            try:
                await self._runner.reopen()
                await self._ensure_schema(*self._schema)
            except LeadgwError as exc:
                raise Unavailable(f"the notes store is down and did not reopen: {exc}") from exc
            await self._run(_health, timeout_s=min(self._timeout_s, 2.0))

    async def wait_indexed(self) -> None:
        """Returns once the engine has indexed what was written (Edge's background optimizer;
        a server indexes by itself). For bulk loads and benchmarks."""
        await self._run(_wait_indexed, timeout_s=_OPEN_TIMEOUT_S)

    async def snapshot(self, path: Path) -> None:
        """Writes a snapshot of the whole store (every tenant) to ``path`` (Edge only)."""
        await self._run(_snapshot, path.resolve(), timeout_s=_OPEN_TIMEOUT_S)

    async def restore(self, path: Path) -> None:
        """Replaces the whole store with the snapshot at ``path`` (Edge only)."""
        await self._run(_restore, path.resolve(), timeout_s=_OPEN_TIMEOUT_S)

    # ---- notes ----

    async def existing(self, tenant: str, note_ids: Iterable[str]) -> dict[str, StoredNote]:
        """The stored notes among ``note_ids`` (chunk 0 payloads), keyed by note id."""
        ids = tuple(dict.fromkeys(note_ids))
        if not ids:
            return {}
        flt = tenant_filter(tenant, *_first_chunks(MatchAny("note_id", ids)))
        payloads = await self._run(_scroll, NOTES, flt, True)
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
            flt = tenant_filter(tenant, MatchAny("note_id", tuple(found)))
            await self._run(_delete, NOTES, flt)
        return list(found.values())

    async def delete_lead(self, tenant: str, lead_id: str) -> int:
        """Deletes every note of the lead and its profile; returns the number of notes."""
        count = await self.count_notes(tenant, lead_id)
        await self._run(_delete, NOTES, tenant_filter(tenant, Match("lead_id", lead_id)))
        await self._run(_delete, LEADS, tenant_filter(tenant, Match("lead_id", lead_id)))
        return count

    async def count_notes(self, tenant: str, lead_id: str | None = None) -> int:
        """Notes (not points) of the tenant, or of one of its leads."""
        must = _first_chunks(*([Match("lead_id", lead_id)] if lead_id is not None else []))
        return await self._run(_count, NOTES, tenant_filter(tenant, *must))

    async def count_points(self, tenant: str) -> int:
        """Stored points of the tenant: one per chunk of every note."""
        return await self._run(_count, NOTES, tenant_filter(tenant))

    async def search(
        self,
        tenant: str,
        vector: Sequence[float],
        *,
        text: str | None = None,
        lead_id: str | None = None,
        kinds: Sequence[str] = (),
        since: datetime | None = None,
        until: datetime | None = None,
        top_k: int = 5,
    ) -> list[tuple[StoredNote, float]]:
        """The ``top_k`` best notes (best chunk per note), best first. With ``text``, by meaning
        and keywords fused (RRF); without, by meaning alone (cosine)."""
        query = NoteQuery(vector, text, lead_id, kinds, since, until, top_k)
        return (await self.search_many(tenant, [query]))[0]

    async def search_many(
        self, tenant: str, queries: Sequence[NoteQuery]
    ) -> list[list[tuple[StoredNote, float]]]:
        """Several searches of one tenant in one engine call (a summary's retrieval)."""
        return (await self.search_many_timed(tenant, queries))[0]

    async def search_many_timed(
        self, tenant: str, queries: Sequence[NoteQuery]
    ) -> tuple[list[list[tuple[StoredNote, float]]], float]:
        """``search_many`` and the engine's own seconds for it, taken where the engine runs:
        what the store costs, apart from the hop to its thread (or the store host) and back."""
        specs = [(_spec(tenant, q), q.top_k) for q in queries]
        found, engine_s = await self._run(_search, specs)
        self._engine_duration.record(engine_s, _SEARCH_ATTRIBUTES)
        return [[(StoredNote.from_payload(p), s) for p, s in hits] for hits in found], engine_s

    async def recent(self, tenant: str, lead_id: str, limit: int) -> list[StoredNote]:
        """The lead's newest notes, newest first."""
        flt = tenant_filter(tenant, *_first_chunks(Match("lead_id", lead_id)))
        payloads = await self._run(_recent, flt, limit)
        return [StoredNote.from_payload(p) for p in payloads]

    async def note_hashes(self, tenant: str, lead_id: str) -> list[tuple[str, str]]:
        """(note id, record hash) of every note of the lead, sorted by note id."""
        flt = tenant_filter(tenant, *_first_chunks(Match("lead_id", lead_id)))
        payloads = await self._run(_scroll, NOTES, flt, ["note_id", "record_hash"])
        return sorted((p["note_id"], p["record_hash"]) for p in payloads)

    # ---- lead profiles ----

    async def upsert_profiles(self, tenant: str, profiles: Sequence[dict[str, Any]]) -> None:
        """``profiles``: payloads with lead_id, features and profile_hash."""
        if profiles:
            await self._run(_upsert_profiles, tenant, [dict(p) for p in profiles])

    async def profile(self, tenant: str, lead_id: str) -> dict[str, Any] | None:
        flt = tenant_filter(tenant, Match("lead_id", lead_id))
        return await self._run(_scroll_one, LEADS, flt)

    async def lead_has_notes(self, tenant: str, lead_id: str) -> bool:
        flt = tenant_filter(tenant, Match("lead_id", lead_id))
        return await self._run(_count, NOTES, flt) > 0


def _spec(tenant: str, q: NoteQuery) -> SearchSpec:
    must: list[Condition] = []
    if q.lead_id is not None:
        must.append(Match("lead_id", q.lead_id))
    if q.kinds:
        must.append(MatchAny("kind", tuple(q.kinds)))
    if q.since is not None or q.until is not None:
        must.append(
            Range(
                "created_at",
                gte=q.since.timestamp() if q.since else None,
                lte=q.until.timestamp() if q.until else None,
            )
        )
    vector = [float(x) for x in q.vector]
    return SearchSpec(vector, q.text, tenant_filter(tenant, *must), q.top_k * 2)


# ---- operations: run where the engine lives, so module-level, and plain data in and out ----
# Filters go in as retrieval.filters objects (small, picklable) so that tenant_filter, in the
# caller's process, stays the only place a caller's filter is built.


def _ensure_schema(backend: StoreBackend, dim: int, embedder_name: str) -> None:
    backend.ensure_schema(dim)
    # A start-up check across tenants, not a caller's query: are the stored vectors from
    # another model? Mixing models would make every search quietly wrong.
    other = backend.scroll(
        NOTES,
        unscoped_filter(must_not=(Match("embedder", embedder_name),)),
        ["embedder"],
        limit=1,
    )
    if other:
        raise FailedPrecondition(
            f"notes were embedded with {other[0].get('embedder')!r}, the gateway is configured "
            f"with {embedder_name!r}; run `leadgw notes reindex` (gateway stopped) to re-embed "
            "them from their stored texts, or switch back"
        )


def _health(backend: StoreBackend) -> None:
    backend.health()


def _wait_indexed(backend: StoreBackend) -> None:
    backend.wait_indexed()


def _snapshot(backend: StoreBackend, path: Path) -> None:
    backend.snapshot(path)


def _restore(backend: StoreBackend, path: Path) -> None:
    backend.restore(path)


def _write(backend: StoreBackend, tenant: str, writes: Sequence[NoteWrite]) -> None:
    points: list[PointWrite] = []
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
                PointWrite(point_id(tenant, w.note_id, chunk), payload, list(vector), text)
            )
    if points:
        backend.upsert(NOTES, points)
    for w in writes:
        note = Match("note_id", w.note_id)
        if w.vectors is None:
            # Same text, new metadata (lead, kind, date): keep the vectors, rewrite payload.
            backend.set_payload(NOTES, w.payload, tenant_filter(tenant, note))
        elif w.previous_chunks > len(w.chunk_texts):
            stale = Range("chunk", gte=float(len(w.chunk_texts)))
            backend.delete(NOTES, tenant_filter(tenant, note, stale))


def _delete(backend: StoreBackend, collection: str, flt: Filter) -> None:
    backend.delete(collection, flt)


def _count(backend: StoreBackend, collection: str, flt: Filter) -> int:
    return backend.count(collection, flt)


_SEARCH_ATTRIBUTES = {"operation": "search"}


def _search(
    backend: StoreBackend, specs: list[tuple[SearchSpec, int]]
) -> tuple[list[list[tuple[Payload, float]]], float]:
    """The hits of each spec, and the seconds the engine took for them all."""
    started = time.perf_counter()
    # Several chunks of one long note may match; keep each note's best chunk. Most notes are a
    # single chunk, so twice top_k usually suffices; a search that falls short asks again.
    results: list[list[tuple[Payload, float]]] = [[] for _ in specs]
    pending = list(range(len(specs)))
    current = [spec for spec, _ in specs]
    while pending:
        found = backend.search([current[i] for i in pending])
        again = []
        for i, points in zip(pending, found, strict=True):
            best: dict[str, tuple[Payload, float]] = {}
            for payload, score in points:
                best.setdefault(payload["note_id"], (payload, score))
            top_k = specs[i][1]
            if len(best) >= top_k or len(points) < current[i].limit:
                results[i] = list(best.values())[:top_k]
            else:
                spec = current[i]
                current[i] = SearchSpec(spec.dense, spec.keywords, spec.flt, spec.limit * 4)
                again.append(i)
        pending = again
    return results, time.perf_counter() - started


def _recent(backend: StoreBackend, flt: Filter, limit: int) -> list[Payload]:
    return backend.scroll(NOTES, flt, True, limit=limit, newest_first=True)


def _scroll(backend: StoreBackend, collection: str, flt: Filter, fields: Any) -> list[Payload]:
    return backend.scroll(collection, flt, fields)


def _scroll_one(backend: StoreBackend, collection: str, flt: Filter) -> Payload | None:
    found = backend.scroll(collection, flt, True, limit=1)
    return dict(found[0]) if found else None


def _upsert_profiles(backend: StoreBackend, tenant: str, profiles: list[Payload]) -> None:
    points = [
        PointWrite(lead_point_id(tenant, p["lead_id"]), {**p, "tenant": tenant}) for p in profiles
    ]
    backend.upsert(LEADS, points)
