"""Bulk-loaded Qdrant local-mode stores for the GenAI benches: random unit vectors written straight
through the store (``retrieval.bench.fill``), so 100,000 notes take a minute, not an hour of
embedding.

Local mode commits SQLite once per point; on a disk that syncs, that alone is ~2 ms a point (about
4 minutes for 100,000). The stores are scratch data, so they go on tmpfs (/dev/shm) when there is
one; searches are unaffected either way: local mode holds every point in memory and searches there.
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

from retrieval.bench import fill
from retrieval.embedder import MINILM_DIM, MINILM_NAME
from retrieval.store import NotesStore, NoteWrite, make_client

TMPFS = Path("/dev/shm")
LOCAL_MODE_WARNING = "Local mode is not recommended"


def scratch_parent() -> Path | None:
    """Where scratch stores go: tmpfs if writable, else the system's temporary folder."""
    return TMPFS if TMPFS.is_dir() and os.access(TMPFS, os.W_OK) else None


def scratch_dir(prefix: str) -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix=prefix, dir=scratch_parent())


async def open_local_store(data_dir: Path) -> NotesStore:
    """The gateway's own store class in local mode, with the gateway's embedder name and size."""
    from gateway.settings import Settings

    # model_validate, not the constructor: no LEADGW_* variable of the caller may redirect it.
    settings = Settings.model_validate(
        {"data_dir": data_dir, "qdrant_url": None, "load_demo_corpus": False}
    )
    return await NotesStore.open(
        lambda: make_client(settings), dim=MINILM_DIM, embedder_name=MINILM_NAME
    )


class _AsTenant:
    """Writes into ``tenant`` whatever tenant the caller names.

    ``retrieval.bench.fill`` writes as its own fixed tenant; the summary bench needs the notes
    under the tenant the gateway gives an unauthenticated caller.
    """

    def __init__(self, store: NotesStore, tenant: str) -> None:
        self._store = store
        self._tenant = tenant

    async def write(self, _tenant: str, writes: Sequence[NoteWrite]) -> None:
        await self._store.write(self._tenant, writes)


async def fill_store(
    store: NotesStore, notes: int, tenant: str | None = None, seed: int = 0
) -> float:
    """Writes ``notes`` notes (leads ``lead-0000`` to ``lead-0999``); returns the seconds taken."""
    target = store if tenant is None else _AsTenant(store, tenant)
    started = time.perf_counter()
    with warnings.catch_warnings():
        # Local mode warns past 20,000 points on every write; the report says so once instead.
        warnings.filterwarnings("ignore", message=LOCAL_MODE_WARNING)
        await fill(target, notes, MINILM_DIM, MINILM_NAME, seed)  # type: ignore[arg-type]
    return time.perf_counter() - started


async def build_store(data_dir: Path, notes: int, tenant: str | None = None) -> float:
    """A closed local-mode store of ``notes`` notes under ``data_dir``; returns the fill seconds."""
    store = await open_local_store(data_dir)
    try:
        return await fill_store(store, notes, tenant)
    finally:
        await store.close()  # releases local mode's folder lock for the gateway that opens it next
