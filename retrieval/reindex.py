"""Re-embeds every stored note with another embedder, from the texts the store keeps.

The new vectors go into a second notes collection (``REINDEX``) while the old one stays as it
was; only once every point is there does the new one replace it, in one step
(:meth:`StoreBackend.commit_reindex`). A reindex cut short leaves the old store valid and keeps
what it embedded: the next run re-embeds only the points not yet there (matched by id and by
payload, so a note changed in between is embedded again). Point ids, payloads (but the embedder
name and the two hashes that include it) and lead profiles stay as they were.

Run it with no gateway writing to the store: the embedded store enforces that (one owner); a
Qdrant server does not, and an IndexNotes call made during a reindex may be lost from the new
collection.

:func:`upgrade_at_start` runs it as a gateway starts, before it serves, when the store's notes
were embedded by the other form of the local MiniLM (a data dir of an earlier version, or the
embedder switched back), on the embedded store: local CPU time only, resumable, progress in the
log, and the store's one owner is the starting gateway, so no other process re-embeds or writes
meanwhile. Left to the operator (the gateway refuses the notes RPCs and names ``leadgw notes
reindex``): any other difference (an embeddings endpoint added, changed or removed), and a Qdrant
server, which several replicas share and would each start re-embedding at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from retrieval.backend import NOTES, REINDEX, Payload, PointWrite, StoreBackend
from retrieval.config import NotesConfig, StoreConfig
from retrieval.embedder import LOCAL_EMBEDDERS, Embedder, OnnxEmbedder
from retrieval.filters import Match, unscoped_filter
from retrieval.notes import note_hashes
from retrieval.shared_store import StoreLink
from retrieval.store import _ensure_schema, point_id, runner_for
from retrieval.store_runner import StoreRunner
from runtimes.errors import FailedPrecondition

log = logging.getLogger("leadgw.retrieval")

BATCH = 128
_LONG_S = 600.0
"""Scrolling or swapping a whole store: generous, but bounded."""

Progress = Callable[[int, int], None]
"""Called with (points done, points in all) after each batch."""


@dataclass(frozen=True, slots=True)
class ReindexReport:
    points: int  # note chunks in the store, all now embedded with the new embedder
    embedded: int  # of which re-embedded by this run (the rest an interrupted run had done)
    previous: tuple[str, ...]  # the embedder names found on the old points
    seconds: float


async def reindex(
    config: StoreConfig,
    embedder: Embedder,
    *,
    progress: Progress | None = None,
    batch: int = BATCH,
    runner: StoreRunner | None = None,
) -> ReindexReport:
    """Re-embeds the store ``config`` names with ``embedder`` (see the module docstring).

    ``runner``: another engine (tests hand one a Qdrant client); the store's own by default.
    """
    started = time.perf_counter()
    runner = runner or runner_for(config)
    await runner.open()
    try:
        prepared = await runner.run(_prepare, embedder.dim, timeout_s=_LONG_S)
        if prepared is None:  # nothing stored yet: just the collections, for this embedder
            await runner.run(_ensure_schema, embedder.dim, embedder.name, timeout_s=_LONG_S)
            return ReindexReport(0, 0, (), time.perf_counter() - started)
        old, staged = prepared
        todo: list[tuple[str, Payload]] = []
        for payload in old:
            pid = point_id(payload["tenant"], payload["note_id"], int(payload["chunk"]))
            new = _rewritten(payload, embedder.name)
            if staged.get(pid) != new:
                todo.append((pid, new))
        done = len(old) - len(todo)
        if progress is not None:
            progress(done, len(old))
        for start in range(0, len(todo), batch):
            part = todo[start : start + batch]
            texts = [p["chunk_text"] for _, p in part]
            vectors = (await embedder.embed(texts)).tolist()
            points = [
                PointWrite(pid, p, vec, text)
                for (pid, p), vec, text in zip(part, vectors, texts, strict=True)
            ]
            await runner.run(_upsert, points, timeout_s=_LONG_S)
            done += len(part)
            if progress is not None:
                progress(done, len(old))
        await runner.run(_commit, len(old), timeout_s=_LONG_S)
        # The same check a gateway makes when it starts: every point is this embedder's now.
        await runner.run(_ensure_schema, embedder.dim, embedder.name, timeout_s=_LONG_S)
    finally:
        await runner.close()
    previous = tuple(sorted({str(p.get("embedder")) for p in old}))
    report = ReindexReport(len(old), len(todo), previous, time.perf_counter() - started)
    log.info(
        "reindexed %d note points (%d embedded by this run) from %s to %s in %.1f s",
        report.points,
        report.embedded,
        ", ".join(previous),
        embedder.name,
        report.seconds,
    )
    return report


async def upgrade_at_start(
    config: NotesConfig,
    *,
    shared: StoreLink | None = None,
    batch: int = BATCH,
    log_every_s: float = 10.0,
) -> ReindexReport | None:
    """Re-embeds the store when its notes come from the other local MiniLM form than the one
    ``config`` names (see the module docstring); None when there was nothing to do.

    ``shared``: the Edge store a ``--workers`` supervisor hosts (run before any worker starts).
    Progress goes to the log every ``log_every_s`` seconds. Raises as :func:`reindex` does; the
    old notes are then kept, and the next start carries on where this one stopped.
    """
    wanted = config.embedder.local
    if config.embedder.url or config.store.qdrant_url or not config.reindex_at_start:
        return None
    if wanted not in LOCAL_EMBEDDERS:
        return None
    runner = runner_for(config.store, shared)
    await runner.open()
    try:
        found = await runner.run(_other_embedder, wanted, timeout_s=_LONG_S)
    finally:
        await runner.close()
    if found is None or found not in LOCAL_EMBEDDERS:
        return None  # nothing stored, all current, or not ours to re-embed unasked
    log.warning(
        "notes store: the notes were embedded with %s, the gateway is configured with %s: "
        "re-embedding them from their stored texts before serving (the old notes stay as they "
        "are until every one is done; a start cut short carries on where it stopped)",
        found,
        wanted,
    )
    embedder = await OnnxEmbedder.open(wanted)
    try:
        return await reindex(
            config.store,
            embedder,
            progress=_log_progress(log_every_s),
            batch=batch,
            runner=runner_for(config.store, shared),
        )
    finally:
        await embedder.close()


def _log_progress(every_s: float) -> Progress:
    started = time.perf_counter()
    last = [-every_s]

    def progress(done: int, total: int) -> None:
        now = time.perf_counter() - started
        if done < total and now - last[0] < every_s:
            return
        last[0] = now
        share = 100.0 * done / total if total else 100.0
        log.info(
            "notes store: re-embedded %d of %d note points (%.0f%%) in %.0f s",
            done,
            total,
            share,
            now,
        )

    return progress


def _rewritten(payload: Payload, embedder_name: str) -> Payload:
    """The point's payload as the new embedder would have written it."""
    title, text = payload.get("title", ""), payload["text"]
    embedded = f"{title}\n\n{text}" if title else text
    text_hash, record_hash = note_hashes(
        embedder_name, embedded, payload["lead_id"], payload["kind"], payload["created_iso"]
    )
    return {
        **payload,
        "embedder": embedder_name,
        "text_hash": text_hash,
        "record_hash": record_hash,
    }


# ---- operations: run where the engine lives ----


def _prepare(backend: StoreBackend, dim: int) -> tuple[list[Payload], dict[str, Payload]] | None:
    """Opens the old notes as they are and the reindex collection; returns every old payload
    and what an earlier, interrupted run left in the reindex collection (by point id)."""
    stored = backend.stored_dim()
    if stored is None:
        return None
    backend.ensure_schema(stored)
    backend.open_reindex(dim)
    everything = unscoped_filter(must_not=())
    old = backend.scroll(NOTES, everything, True)
    staged = {
        point_id(p["tenant"], p["note_id"], int(p["chunk"])): p
        for p in backend.scroll(REINDEX, everything, True)
    }
    wanted = {point_id(p["tenant"], p["note_id"], int(p["chunk"])) for p in old}
    if not staged.keys() <= wanted:
        # Notes were deleted since the interrupted run: start again rather than carry them over.
        backend.drop_reindex()
        backend.open_reindex(dim)
        staged = {}
    return old, staged


def _other_embedder(backend: StoreBackend, name: str) -> str | None:
    """The embedder of some stored note other than ``name``'s; None when there is none."""
    stored = backend.stored_dim()
    if stored is None:
        return None
    backend.ensure_schema(stored)
    found = backend.scroll(
        NOTES, unscoped_filter(must_not=(Match("embedder", name),)), ["embedder"], limit=1
    )
    return str(found[0].get("embedder")) if found else None


def _upsert(backend: StoreBackend, points: list[PointWrite]) -> None:
    backend.upsert(REINDEX, points)


def _commit(backend: StoreBackend, expected: int) -> None:
    found = backend.count(REINDEX, unscoped_filter(must_not=()))
    if found != expected:
        raise FailedPrecondition(
            f"the reindexed collection holds {found} points, the store {expected}; the old "
            "notes are kept: run `leadgw notes reindex` again"
        )
    backend.commit_reindex()
