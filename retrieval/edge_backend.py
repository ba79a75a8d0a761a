"""Qdrant Edge: Qdrant's own engine (Rust: HNSW, payload indexes, BM25) inside this process.

Two shards under ``data_dir/edge``: ``notes`` (a dense vector and a BM25 sparse vector per note
chunk) and ``leads`` (profiles, looked up by payload only). A shard has one owner: Edge locks its
write-ahead log, so a second opener, in this process or another, is refused; with several
workers one process hosts it (:mod:`retrieval.shared_store`).

Edge searches release the GIL, so the gateway's threads keep scoring while a search runs. Edge
does not build HNSW graphs by itself, and its optimizer holds the GIL while it runs, so it runs
only when asked (:meth:`EdgeBackend.wait_indexed`: bulk loads, benchmarks); points not indexed
are searched exactly (brute force), so nothing written is ever missed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tarfile
import threading
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import qdrant_edge as qe

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
from retrieval.config import StoreConfig
from retrieval.filters import Condition, Filter, Match, MatchAny
from retrieval.keywords import Keywords
from runtimes.errors import FailedPrecondition, InvalidInput, Unavailable

log = logging.getLogger("leadgw.retrieval")

SNAPSHOT_FORMAT = "leadgw-edge-snapshot/1"
_MANIFEST = "leadgw-snapshot.json"
_SCROLL_PAGE = 512
_REINDEX_DONE = "notes.reindex.complete"
"""Written once the reindexed shard is complete: from then on the swap is finished on any open."""
_REPLACED = "notes.replaced"
INDEXING_THREADS = 0
"""HNSW build threads of a new notes shard; 0: one per core (the build runs only when asked)."""
EF_CONSTRUCT = 64
"""HNSW build candidates of a new notes shard; its searches also use ef 64 (Edge's default search
ef is the shard's ef_construct)."""

_NOTE_INDEXES: dict[str, Any] = {
    # is_tenant: Qdrant keeps each tenant's points together and plans a tenant's filter first.
    "tenant": qe.KeywordIndexParams(is_tenant=True),
    # The HNSW build also adds links within mid-sized blocks of these fields' values
    # (created_at's ranges, kind's values) past ~30,000 notes. That costs build time, but
    # turning it off (enable_hnsw False) was measured to drop recall@8 of a 30-day or one-kind
    # filtered search from 0.98 to 0.30-0.55 (docs/perf/2026-11-28-hnsw.md): kept.
    "lead_id": qe.PayloadSchemaType.Keyword,
    "note_id": qe.PayloadSchemaType.Keyword,
    "kind": qe.PayloadSchemaType.Keyword,
    "embedder": qe.PayloadSchemaType.Keyword,
    "created_at": qe.PayloadSchemaType.Float,
    "chunk": qe.PayloadSchemaType.Integer,
}
_LEAD_INDEXES: dict[str, Any] = {
    "tenant": qe.KeywordIndexParams(is_tenant=True),
    "lead_id": qe.PayloadSchemaType.Keyword,
}


def _condition(cond: Condition) -> qe.FieldCondition:
    if isinstance(cond, Match):
        return qe.FieldCondition(cond.key, match=qe.MatchValue(cond.value))
    if isinstance(cond, MatchAny):
        return qe.FieldCondition(cond.key, match=qe.MatchAny(list(cond.values)))
    return qe.FieldCondition(cond.key, range=qe.RangeFloat(gte=cond.gte, lte=cond.lte))


def edge_filter(flt: Filter) -> qe.Filter:
    return qe.Filter(
        must=[_condition(c) for c in flt.must] or None,
        must_not=[_condition(c) for c in flt.must_not] or None,
    )


def _payload(record: Any) -> Payload:
    return dict(record.payload or {})


class EdgeBackend:
    """The two shards, opened by the one process that owns them."""

    def __init__(self, config: StoreConfig) -> None:
        self._config = config
        self._root = config.edge_dir
        self._shards: dict[str, qe.EdgeShard] = {}
        self._keywords = Keywords()
        # Writes, snapshots and restores one at a time; reads need no lock (Edge has its own).
        self._lock = threading.RLock()

    # ---- opening ----

    def ensure_schema(self, dim: int) -> None:
        with self._lock:
            if self._shards:
                return self._check_dim(dim)
            self._finish_reindex()
            self._shards[NOTES] = self._open(NOTES, self._notes_config(dim), _NOTE_INDEXES)
            self._shards[LEADS] = self._open(LEADS, self._leads_config(), _LEAD_INDEXES)
            self._check_dim(dim)
        if self._config.local_mode_dir.exists():
            from retrieval.migrate import migrate_local_mode

            migrate_local_mode(self._config.local_mode_dir, self)

    def _notes_config(self, dim: int) -> qe.EdgeConfig:
        return qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine),
            sparse_vectors={KEYWORDS: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
            # Indexing runs only when asked (wait_indexed: bulk loads, re-indexing), never while
            # the gateway serves, so it may use every core (0: one thread per core).
            # ef_construct 64 rather than 100: on 23,612 real note embeddings, tenant-wide recall@8
            # against exact search was the same within noise (0.978 and 0.974), and the build
            # took two thirds of the CPU (docs/perf/2026-11-28-hnsw.md).
            hnsw_config=qe.HnswIndexConfig(
                m=16,
                ef_construct=EF_CONSTRUCT,
                full_scan_threshold=10_000,
                max_indexing_threads=INDEXING_THREADS,
            ),
            # int8 copies of the vectors, kept in memory: the HNSW build and the graph walk
            # compare those (measured: index build 2x faster, search faster), and the best
            # candidates are rescored on the original float32 vectors, so scores stay exact.
            quantization_config=qe.ScalarQuantizationConfig(
                type=qe.ScalarType.Int8, always_ram=True
            ),
            # One search thread: the other cores belong to scoring.
            max_search_threads=self._config.search_threads,
        )

    def _leads_config(self) -> qe.EdgeConfig:
        # Edge needs some vector; profiles carry none, so an empty sparse one stands in.
        return qe.EdgeConfig(
            sparse_vectors={"none": qe.EdgeSparseVectorParams()},
            max_search_threads=self._config.search_threads,
        )

    def _open(self, name: str, config: qe.EdgeConfig, indexes: dict[str, Any]) -> qe.EdgeShard:
        path = self._root / name
        try:
            if path.exists():
                shard = qe.EdgeShard.load(str(path))
            else:
                shard = qe.EdgeShard.create(str(path), config)
                for field, schema in indexes.items():
                    shard.update(qe.UpdateOperation.create_field_index(field, schema))
        except Exception as exc:  # Edge raises plain Exception; its message says what failed
            self._close_shards()
            message = str(exc)
            if "WouldBlock" in message:
                raise Unavailable(
                    f"the notes store {path} is in use by another process; run one gateway "
                    "(or one `serve --workers` supervisor) per data_dir, or set qdrant_url"
                ) from exc
            raise FailedPrecondition(
                f"the notes store {path} is not a readable Qdrant Edge shard ({message}); "
                "move it away, or restore a snapshot into it"
            ) from exc
        return shard

    def _check_dim(self, dim: int) -> None:
        config = json.loads((self._root / NOTES / "edge_config.json").read_text())
        size = config.get("vectors", {}).get("", {}).get("size")
        if size != dim:
            raise FailedPrecondition(
                f"the notes store {self._root / NOTES} holds {size}-dim vectors but the embedder "
                f"makes {dim}-dim ones; run `leadgw notes reindex` (gateway stopped) to re-embed "
                "them, or switch back"
            )

    def _shard(self, collection: str) -> qe.EdgeShard:
        shard = self._shards.get(collection)
        if shard is None:
            with self._lock:
                # A restarted host (or a reopened store) loads what is on disk on first use.
                if not self._shards and (self._root / NOTES).exists():
                    self._load_existing()
            shard = self._shards.get(collection)
        if shard is None:
            raise Unavailable("the notes store is not open")
        return shard

    def preload(self) -> bool:
        """Loads the shards already on disk (a store host does it as it starts); False when
        there are none yet, or a local-mode data dir waits for ``ensure_schema`` to migrate it."""
        with self._lock:
            if self._shards:
                return True
            if not (self._root / NOTES).exists() or self._config.local_mode_dir.exists():
                return False
            self._load_existing()
            return True

    def _load_existing(self) -> None:
        self._finish_reindex()
        dim = self._dim_of(self._root / NOTES)
        self._shards[NOTES] = self._open(NOTES, self._notes_config(dim), _NOTE_INDEXES)
        self._shards[LEADS] = self._open(LEADS, self._leads_config(), _LEAD_INDEXES)

    # ---- writes ----

    def upsert(self, collection: str, points: list[PointWrite]) -> None:
        edge_points = [self._point(p) for p in points]
        with self._lock:
            self._shard(collection).update(qe.UpdateOperation.upsert_points(edge_points))

    def _point(self, point: PointWrite) -> qe.Point:
        vector: dict[str, Any] = {}
        if point.dense is not None:
            vector[""] = point.dense
        if point.keywords is not None:
            sparse = self._keywords.document(point.keywords)
            vector[KEYWORDS] = qe.SparseVector(sparse.indices, sparse.values)
        return qe.Point(point.id, vector, point.payload)

    def set_payload(self, collection: str, payload: Payload, flt: Filter) -> None:
        with self._lock:
            self._shard(collection).update(
                qe.UpdateOperation.set_payload_by_filter(edge_filter(flt), payload)
            )

    def delete(self, collection: str, flt: Filter) -> None:
        with self._lock:
            self._shard(collection).update(
                qe.UpdateOperation.delete_points_by_filter(edge_filter(flt))
            )

    # ---- reads ----

    def count(self, collection: str, flt: Filter) -> int:
        return self._shard(collection).count(qe.CountRequest(exact=True, filter=edge_filter(flt)))

    def scroll(
        self,
        collection: str,
        flt: Filter,
        fields: bool | list[str],
        *,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[Payload]:
        shard = self._shard(collection)
        order = qe.OrderBy("created_at", direction=qe.Direction.Desc) if newest_first else None
        out: list[Payload] = []
        offset: Any = None
        while True:
            page = _SCROLL_PAGE if limit is None else min(_SCROLL_PAGE, limit - len(out))
            records, offset = shard.scroll(
                qe.ScrollRequest(
                    offset=offset,
                    limit=page,
                    filter=edge_filter(flt),
                    with_payload=fields,
                    with_vector=False,
                    order_by=order,
                )
            )
            out.extend(_payload(r) for r in records)
            if offset is None or order is not None or (limit is not None and len(out) >= limit):
                return out

    def search(self, specs: list[SearchSpec]) -> list[list[tuple[Payload, float]]]:
        requests = [self._request(spec) for spec in specs]
        found = self._shard(NOTES).query_batch(qe.QueryBatchRequest(requests))
        return [[(_payload(p), float(p.score)) for p in points] for points in found]

    def _request(self, spec: SearchSpec) -> qe.QueryRequest:
        flt = edge_filter(spec.flt)
        dense = qe.Query.Nearest(spec.dense)
        sparse = self._keywords.query(spec.keywords) if spec.keywords else None
        if sparse is None or not sparse.indices:  # no keyword survives stop words: meaning only
            return qe.QueryRequest(limit=spec.limit, query=dense, filter=flt, with_payload=True)
        keywords = qe.Query.Nearest(qe.SparseVector(sparse.indices, sparse.values), using=KEYWORDS)
        return qe.QueryRequest(
            limit=spec.limit,
            prefetches=[
                qe.Prefetch(limit=spec.limit, query=dense, filter=flt),
                qe.Prefetch(limit=spec.limit, query=keywords, filter=flt),
            ],
            query=qe.Fusion.Rrf(k=RRF_K),  # type: ignore[arg-type]  # the stub omits nested classes
            filter=flt,
            with_payload=True,
        )

    def health(self) -> None:
        self._shard(NOTES).info()
        self._shard(LEADS).info()

    # ---- HNSW ----

    def wait_indexed(self) -> None:
        """Builds the HNSW index of what is not indexed yet, blocking (bulk loads, benchmarks).

        Not run automatically: qdrant-edge-py 0.9.0 holds the GIL for the whole optimizer run
        (measured: 9 s at 10,000 points, during which no other thread of the process ran), which
        would stall the gateway's event loop and scoring. Until it runs, searches are exact.
        """
        with self._lock:
            self._shard(NOTES).optimize()

    # ---- reindexing (leadgw notes reindex) ----

    def stored_dim(self) -> int | None:
        with self._lock:
            self._finish_reindex()
        notes = self._root / NOTES
        return self._dim_of(notes) if (notes / "edge_config.json").exists() else None

    def open_reindex(self, dim: int) -> None:
        with self._lock:
            path = self._root / REINDEX
            if REINDEX not in self._shards and path.exists() and self._dim_of(path) != dim:
                shutil.rmtree(path)
            if REINDEX not in self._shards:
                self._shards[REINDEX] = self._open(REINDEX, self._notes_config(dim), _NOTE_INDEXES)

    def commit_reindex(self) -> None:
        """Builds the new shard's HNSW index (no gateway runs during a reindex, so holding the
        GIL does no harm), closes both notes shards, marks the new one complete, renames it
        into place."""
        with self._lock:
            self._shard(REINDEX).optimize()
            self._shard(REINDEX).flush()
            for name in (NOTES, REINDEX):
                shard = self._shards.pop(name, None)
                if shard is not None:
                    shard.close()
            (self._root / _REINDEX_DONE).write_text("the notes.reindex shard is complete\n")
            self._finish_reindex()
            dim = self._dim_of(self._root / NOTES)
            self._shards[NOTES] = self._open(NOTES, self._notes_config(dim), _NOTE_INDEXES)

    def _finish_reindex(self) -> None:
        # Each step is a rename or a delete, and the marker goes last, so a crash anywhere in
        # here leaves a state this same function completes on the next open.
        marker = self._root / _REINDEX_DONE
        if not marker.exists():
            return
        new, current, replaced = self._root / REINDEX, self._root / NOTES, self._root / _REPLACED
        if new.exists():
            if current.exists():
                shutil.rmtree(replaced, ignore_errors=True)
                current.rename(replaced)
            new.rename(current)
        shutil.rmtree(replaced, ignore_errors=True)
        marker.unlink()
        log.info("notes store: the reindexed notes shard replaced the old one in %s", self._root)

    def drop_reindex(self) -> None:
        with self._lock:
            shard = self._shards.pop(REINDEX, None)
            if shard is not None:
                shard.close()
            shutil.rmtree(self._root / REINDEX, ignore_errors=True)

    # ---- snapshots ----

    def snapshot(self, path: Path) -> None:
        """A tar of both shards, taken with writes paused."""
        with self._lock:
            for shard in self._shards.values():
                shard.flush()
            path.parent.mkdir(parents=True, exist_ok=True)
            manifest = {"format": SNAPSHOT_FORMAT, "qdrant_edge": version("qdrant-edge-py")}
            staging = path.with_name(path.name + ".partial")
            try:
                with tarfile.open(staging, "w") as tar:
                    manifest_file = self._root / _MANIFEST
                    manifest_file.write_text(json.dumps(manifest))
                    try:
                        tar.add(manifest_file, arcname=_MANIFEST)
                        for name in (NOTES, LEADS):
                            tar.add(self._root / name, arcname=name)
                    finally:
                        manifest_file.unlink()
                # The rename is the last step, so a file already at ``path`` stays whole until
                # the new one is complete.
                staging.replace(path)
            except BaseException:
                # A partial tar is as large as the store (hundreds of MB): never leave it behind.
                with contextlib.suppress(OSError):
                    staging.unlink(missing_ok=True)
                raise

    def restore(self, path: Path) -> None:
        """Replaces both shards with a snapshot's; the current ones stay beside, renamed."""
        with self._lock:
            staging = self._root.with_name(self._root.name + ".restoring")
            shutil.rmtree(staging, ignore_errors=True)
            _extract(path, staging)
            self._dim_of(staging / NOTES)  # refuses a snapshot without a notes shard
            self._close_shards()
            previous = self._root.with_name(f"{self._root.name}.before-restore-{int(time.time())}")
            self._root.rename(previous)
            staging.rename(self._root)
            try:
                self._load_existing()
            except (FailedPrecondition, Unavailable):
                self._root.rename(staging)
                previous.rename(self._root)
                self._load_existing()
                raise
        log.info("notes store restored from %s; the previous one is kept in %s", path, previous)

    @staticmethod
    def _dim_of(notes_dir: Path) -> int:
        config = json.loads((notes_dir / "edge_config.json").read_text())
        return int(config["vectors"][""]["size"])

    # ---- closing ----

    def close(self) -> None:
        with self._lock:
            self._close_shards()

    def _close_shards(self) -> None:
        for shard in self._shards.values():
            shard.close()
        self._shards.clear()


def _extract(path: Path, target: Path) -> None:
    try:
        with tarfile.open(path) as tar:
            names = tar.getnames()
            if _MANIFEST not in names:
                raise InvalidInput(f"{path} is not a leadgw notes snapshot (no {_MANIFEST})")
            manifest = json.load(tar.extractfile(_MANIFEST))  # type: ignore[arg-type]
            if manifest.get("format") != SNAPSHOT_FORMAT:
                raise InvalidInput(f"{path} has snapshot format {manifest.get('format')!r}")
            tar.extractall(target, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise InvalidInput(f"{path} cannot be read as a notes snapshot: {exc}") from exc
    (target / _MANIFEST).unlink(missing_ok=True)
