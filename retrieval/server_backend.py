"""A Qdrant server (or cluster) through qdrant-client: the production store past one machine.

The same collections, payloads, ids and filters as the embedded Edge store; keyword vectors are
made here with the same BM25 model (:mod:`retrieval.keywords`) and scored by the server's sparse
index with the IDF modifier, so hybrid search means the same on both.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from qdrant_client import QdrantClient
from qdrant_client import models as qm
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from retrieval.backend import (
    KEYWORDS,
    LEADS,
    NOTES,
    REINDEX,
    RRF_K,
    Payload,
    PointWrite,
    SearchSpec,
)
from retrieval.filters import Condition, Filter, Match, MatchAny, Range
from retrieval.keywords import Keywords
from runtimes.errors import FailedPrecondition, Unavailable

log = logging.getLogger("leadgw.retrieval")

_SCROLL_PAGE = 256
_GENERATIONS = (f"{NOTES}_a", f"{NOTES}_b")
"""A reindex fills whichever of these ``NOTES`` does not name, then points the alias at it."""
_NOTE_INDEXES: dict[str, qm.PayloadSchemaType | qm.KeywordIndexParams] = {
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


def _condition(cond: Condition) -> qm.FieldCondition:
    if isinstance(cond, Match):
        return qm.FieldCondition(key=cond.key, match=qm.MatchValue(value=cond.value))
    if isinstance(cond, MatchAny):
        return qm.FieldCondition(key=cond.key, match=qm.MatchAny(any=list(cond.values)))
    assert isinstance(cond, Range)
    return qm.FieldCondition(key=cond.key, range=qm.Range(gte=cond.gte, lte=cond.lte))


@contextmanager
def _server_answers() -> Iterator[None]:
    """The server's absence as ``Unavailable``: the gateway then starts with notes off (scoring
    never waits on the store), ``leadgw.notes`` turns NOT_SERVING, and a notes call fails
    UNAVAILABLE (not INTERNAL), as with the Edge store. Every call to the server goes through it.
    qdrant-client raises ``ResponseHandlingException`` when it cannot reach the server and
    ``UnexpectedResponse`` for an HTTP error status (a wrong API key, a node not ready)."""
    try:
        yield
    except ResponseHandlingException as exc:
        raise Unavailable(f"the Qdrant server is unreachable: {exc}") from exc
    except UnexpectedResponse as exc:
        raise Unavailable(f"the Qdrant server refused: HTTP {exc.status_code}") from exc


def server_filter(flt: Filter) -> qm.Filter:
    return qm.Filter(
        must=[_condition(c) for c in flt.must] or None,
        must_not=[_condition(c) for c in flt.must_not] or None,
    )


class ServerBackend:
    """``client``: a qdrant-client to a server (tests may hand it any qdrant-client)."""

    def __init__(self, client: QdrantClient) -> None:
        self._client = client
        self._keywords = Keywords()
        self._hybrid = True

    @classmethod
    def connect(cls, url: str, api_key: str | None) -> ServerBackend:
        return cls(QdrantClient(url=url, api_key=api_key))

    def ensure_schema(self, dim: int) -> None:
        with _server_answers():
            self._ensure_schema(dim)

    def _ensure_schema(self, dim: int) -> None:
        client = self._client
        if not client.collection_exists(NOTES) and not self._recover_alias():
            self._create_notes(NOTES, dim)
        else:  # an existing collection, or the one a cut-short reindex left: check it
            params = client.get_collection(NOTES).config.params
            vectors = params.vectors
            size = vectors.size if isinstance(vectors, qm.VectorParams) else None
            if size != dim:
                raise FailedPrecondition(
                    f"collection {NOTES!r} holds {size}-dim vectors but the embedder makes "
                    f"{dim}-dim ones; run `leadgw notes reindex` to re-embed them, or switch back"
                )
            self._hybrid = KEYWORDS in (params.sparse_vectors or {})
            if not self._hybrid:
                log.warning(
                    "collection %r has no %r sparse vectors (made before hybrid search); "
                    "SearchNotes ranks by meaning only until it is re-indexed",
                    NOTES,
                    KEYWORDS,
                )
        if not client.collection_exists(LEADS):
            # Profiles are looked up by id, never by similarity: no vectors at all.
            client.create_collection(LEADS, vectors_config={})
            self._create_indexes(LEADS, _LEAD_INDEXES)

    def _create_notes(self, name: str, dim: int) -> None:
        self._client.create_collection(
            name,
            vectors_config=qm.VectorParams(size=dim, distance=qm.Distance.COSINE),
            sparse_vectors_config={KEYWORDS: qm.SparseVectorParams(modifier=qm.Modifier.IDF)},
        )
        self._create_indexes(name, _NOTE_INDEXES)

    # ---- reindexing (leadgw notes reindex) ----

    def _live(self) -> str | None:
        """The collection ``NOTES`` names: its alias's target, or itself (made before aliases)."""
        for alias in self._client.get_aliases().aliases:
            if alias.alias_name == NOTES:
                return alias.collection_name
        return NOTES if self._client.collection_exists(NOTES) else None

    def _staging(self) -> str:
        return _GENERATIONS[1] if self._live() == _GENERATIONS[0] else _GENERATIONS[0]

    def _name(self, collection: str) -> str:
        return self._staging() if collection == REINDEX else collection

    def _recover_alias(self) -> bool:
        """A commit cut between dropping a pre-alias ``notes`` collection and creating the
        alias leaves only the complete new generation: point the alias at it."""
        found = [c for c in _GENERATIONS if self._client.collection_exists(c)]
        if len(found) != 1:
            return False
        log.warning(
            "collection %r is missing; pointing it at %r (a finished reindex)", NOTES, found[0]
        )
        self._alias(found[0], drop_old=False)
        return True

    def _alias(self, target: str, *, drop_old: bool) -> None:
        create = qm.CreateAliasOperation(
            create_alias=qm.CreateAlias(collection_name=target, alias_name=NOTES)
        )
        drop = qm.DeleteAliasOperation(delete_alias=qm.DeleteAlias(alias_name=NOTES))
        # One request: readers see the old collection or the new one, never none.
        self._client.update_collection_aliases(
            change_aliases_operations=[drop, create] if drop_old else [create]
        )

    @_server_answers()
    def stored_dim(self) -> int | None:
        if not self._client.collection_exists(NOTES):
            return None
        vectors = self._client.get_collection(NOTES).config.params.vectors
        return vectors.size if isinstance(vectors, qm.VectorParams) else None

    @_server_answers()
    def open_reindex(self, dim: int) -> None:
        name = self._staging()
        if self._client.collection_exists(name):
            vectors = self._client.get_collection(name).config.params.vectors
            if isinstance(vectors, qm.VectorParams) and vectors.size == dim:
                return
            self._client.delete_collection(name)
        self._create_notes(name, dim)

    @_server_answers()
    def commit_reindex(self) -> None:
        live, new = self._live(), self._staging()
        if live == NOTES:
            # Made before aliases: an alias cannot share a collection's name, so the old
            # collection goes first (searches in that instant fail UNAVAILABLE; nothing is lost:
            # the next ensure_schema points the alias at the new one if this is cut short).
            self._client.delete_collection(NOTES)
            self._alias(new, drop_old=False)
        else:
            self._alias(new, drop_old=live is not None)
            if live is not None:
                self._client.delete_collection(live)
        self._hybrid = True

    @_server_answers()
    def drop_reindex(self) -> None:
        self._client.delete_collection(self._staging())

    def _create_indexes(
        self, collection: str, indexes: dict[str, qm.PayloadSchemaType | qm.KeywordIndexParams]
    ) -> None:
        with warnings.catch_warnings():
            # qdrant-client's local mode (the tests' stand-in) ignores payload indexes.
            warnings.filterwarnings("ignore", message="Payload indexes have no effect")
            for field, schema in indexes.items():
                self._client.create_payload_index(collection, field, field_schema=schema)

    @_server_answers()
    def upsert(self, collection: str, points: list[PointWrite]) -> None:
        hybrid = self._hybrid or collection == REINDEX  # a reindexed collection has keywords
        self._client.upsert(
            self._name(collection), points=[self._point(p, hybrid) for p in points], wait=True
        )

    def _point(self, point: PointWrite, hybrid: bool) -> qm.PointStruct:
        vector: dict[str, Any] = {}
        if point.dense is not None:
            vector[""] = point.dense
        if point.keywords is not None and hybrid:
            sparse = self._keywords.document(point.keywords)
            vector[KEYWORDS] = qm.SparseVector(indices=sparse.indices, values=sparse.values)
        return qm.PointStruct(id=point.id, vector=vector, payload=point.payload)

    @_server_answers()
    def set_payload(self, collection: str, payload: Payload, flt: Filter) -> None:
        self._client.set_payload(
            self._name(collection), payload=payload, points=server_filter(flt), wait=True
        )

    @_server_answers()
    def delete(self, collection: str, flt: Filter) -> None:
        self._client.delete(self._name(collection), points_selector=server_filter(flt), wait=True)

    @_server_answers()
    def count(self, collection: str, flt: Filter) -> int:
        return self._client.count(
            self._name(collection), count_filter=server_filter(flt), exact=True
        ).count

    @_server_answers()
    def scroll(
        self,
        collection: str,
        flt: Filter,
        fields: bool | list[str],
        *,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[Payload]:
        if newest_first:
            records, _ = self._client.scroll(
                self._name(collection),
                scroll_filter=server_filter(flt),
                limit=limit or _SCROLL_PAGE,
                order_by=qm.OrderBy(key="created_at", direction=qm.Direction.DESC),
                with_payload=fields,
            )
            return [dict(r.payload or {}) for r in records]
        out: list[Payload] = []
        offset: Any = None  # the client's own "next page" token, passed back as it came
        while True:
            page = _SCROLL_PAGE if limit is None else min(_SCROLL_PAGE, limit - len(out))
            records, offset = self._client.scroll(
                self._name(collection),
                scroll_filter=server_filter(flt),
                limit=page,
                offset=offset,
                with_payload=fields,
            )
            out.extend(dict(r.payload or {}) for r in records)
            if offset is None or (limit is not None and len(out) >= limit):
                return out

    @_server_answers()
    def search(self, specs: list[SearchSpec]) -> list[list[tuple[Payload, float]]]:
        responses = self._client.query_batch_points(
            NOTES, requests=[self._request(spec) for spec in specs]
        )
        return [[(dict(p.payload or {}), float(p.score)) for p in r.points] for r in responses]

    def _request(self, spec: SearchSpec) -> qm.QueryRequest:
        flt = server_filter(spec.flt)
        sparse = self._keywords.query(spec.keywords) if spec.keywords and self._hybrid else None
        if sparse is None or not sparse.indices:
            return qm.QueryRequest(
                query=spec.dense, filter=flt, limit=spec.limit, with_payload=True
            )
        return qm.QueryRequest(
            prefetch=[
                qm.Prefetch(query=spec.dense, filter=flt, limit=spec.limit),
                qm.Prefetch(
                    query=qm.SparseVector(indices=sparse.indices, values=sparse.values),
                    using=KEYWORDS,
                    filter=flt,
                    limit=spec.limit,
                ),
            ],
            query=qm.RrfQuery(rrf=qm.Rrf(k=RRF_K)),
            filter=flt,
            limit=spec.limit,
            with_payload=True,
        )

    def wait_indexed(self) -> None:
        return None  # a server indexes by itself; searches are exact until it has

    def health(self) -> None:
        with _server_answers():
            self._client.collection_exists(NOTES)

    def snapshot(self, path: Path) -> None:
        raise FailedPrecondition(
            "snapshots of a Qdrant server are taken by the server (its snapshot API), "
            "not by the gateway"
        )

    def restore(self, path: Path) -> None:
        self.snapshot(path)

    def close(self) -> None:
        self._client.close()
