"""Moves a data dir written by earlier versions (qdrant-client local mode, ``data_dir/qdrant``)
into the Qdrant Edge store, once, on first start.

Every point is copied with its id, payload and stored vector (the embedder check that follows
refuses vectors of another model), and each note chunk gets its keyword vector from its stored
text. Ids are the same uuid5s, so a migration cut short is simply run again on the next start.
The old folder is kept, renamed, until the operator deletes it.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any

from retrieval.backend import LEADS, NOTES, PointWrite, StoreBackend
from runtimes.errors import FailedPrecondition, Unavailable

log = logging.getLogger("leadgw.retrieval")

MIGRATED_SUFFIX = ".migrated-to-edge"
_BATCH = 1_000


def migrate_local_mode(folder: Path, target: StoreBackend) -> tuple[int, int]:
    """Copies ``folder``'s notes and profiles into ``target``; returns (points, profiles)."""
    from qdrant_client import QdrantClient

    started = time.perf_counter()
    log.info("migrating the notes store in %s (qdrant-client local mode) to Qdrant Edge", folder)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Local mode is not recommended")
            client = QdrantClient(path=str(folder))
    except RuntimeError as exc:  # local mode's folder lock
        raise Unavailable(f"cannot migrate {folder}: it is in use by another process") from exc
    try:
        points = _copy(client, NOTES, target, with_vectors=True)
        profiles = _copy(client, LEADS, target, with_vectors=False)
    finally:
        client.close()
    done = folder.with_name(folder.name + MIGRATED_SUFFIX)
    folder.rename(done)
    log.info(
        "migrated %d note points and %d lead profiles from %s to Qdrant Edge in %.1f s; "
        "the old folder is kept as %s",
        points,
        profiles,
        folder,
        time.perf_counter() - started,
        done,
    )
    return points, profiles


def _copy(client: Any, collection: str, target: StoreBackend, *, with_vectors: bool) -> int:
    if not client.collection_exists(collection):
        return 0
    copied = 0
    offset: Any = None
    while True:
        records, offset = client.scroll(
            collection, limit=_BATCH, offset=offset, with_payload=True, with_vectors=with_vectors
        )
        target.upsert(collection, [_point(r, with_vectors) for r in records])
        copied += len(records)
        if offset is None:
            return copied


def _point(record: Any, with_vectors: bool) -> PointWrite:
    payload = dict(record.payload or {})
    if not with_vectors:
        return PointWrite(str(record.id), payload)
    vector = record.vector
    if isinstance(vector, dict):  # named vectors: the notes collection only ever had the default
        vector = vector.get("")
    if not isinstance(vector, list):
        raise FailedPrecondition(f"point {record.id} of the local-mode store has no vector")
    return PointWrite(
        str(record.id), payload, [float(x) for x in vector], payload.get("chunk_text")
    )
