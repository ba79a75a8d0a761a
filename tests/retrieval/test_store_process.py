"""Local mode runs its Qdrant client in one child process: owned, closed, and failing fast."""

from __future__ import annotations

import asyncio
import os
import signal
import textwrap
from pathlib import Path

import psutil
import pytest
from notes_helpers import gone, local_settings, make_note, orphan_exits_after_sigkill

from retrieval.chunking import Chunker
from retrieval.embedder import OnnxEmbedder
from retrieval.notes import NotesService
from retrieval.store import NotesStore, open_local_client
from runtimes.errors import FailedPrecondition, Unavailable

T = "acme"


def child_pids() -> set[int]:
    """Our live child processes, but for multiprocessing's resource tracker: spawn starts that
    helper once and it lives as long as this process, shared by every store."""
    return {
        p.pid
        for p in psutil.Process().children(recursive=True)
        if p.status() != psutil.STATUS_ZOMBIE
        and not any("resource_tracker" in part for part in p.cmdline())
    }


async def open_store(path: Path, embedder: OnnxEmbedder) -> NotesStore:
    settings = local_settings(path)
    return await NotesStore.open_for(settings, dim=embedder.dim, embedder_name=embedder.name)


async def test_the_local_client_lives_in_a_child_that_close_ends(
    tmp_path: Path, embedder: OnnxEmbedder
) -> None:
    before = child_pids()
    store = await open_store(tmp_path / "data", embedder)
    notes = NotesService(store, embedder, Chunker())
    pid = store.client_pid
    try:
        assert pid != os.getpid()
        assert pid in child_pids() - before
        await notes.index(T, [make_note("n1", "Wants to roll over a 401k.")])
        hits = await notes.search(T, "401k rollover", top_k=3)
        assert [h.note.note_id for h in hits] == ["n1"]
    finally:
        await store.close()
    assert gone(pid)
    assert child_pids() <= before
    # The child released the folder lock: the folder opens again.
    again = await open_store(tmp_path / "data", embedder)
    assert await again.count_notes(T) == 1
    await again.close()


async def test_a_refused_open_leaves_no_child(tmp_path: Path, embedder: OnnxEmbedder) -> None:
    first = await open_store(tmp_path / "data", embedder)
    before = child_pids()
    try:
        # Errors raised in the child come back as the same domain errors.
        with pytest.raises(Unavailable, match="is in use by another process"):
            await open_store(tmp_path / "data", embedder)
        assert child_pids() <= before
    finally:
        await first.close()
    with pytest.raises(FailedPrecondition, match="holds 384-dim vectors"):
        settings = local_settings(tmp_path / "data")
        await NotesStore.open_for(settings, dim=768, embedder_name=embedder.name)
    assert child_pids() <= before - {first.client_pid}


async def test_a_killed_child_gives_unavailable_not_a_hang(
    tmp_path: Path, embedder: OnnxEmbedder
) -> None:
    before = child_pids()
    store = await open_store(tmp_path / "data", embedder)
    pid = store.client_pid
    try:
        os.kill(pid, signal.SIGKILL)
        for _ in range(2):  # the call that finds it dead, and every later one
            with pytest.raises(Unavailable, match="exited unexpectedly"):
                await asyncio.wait_for(store.count_notes(T), timeout=10)
    finally:
        await asyncio.wait_for(store.close(), timeout=10)
    assert gone(pid)
    assert child_pids() <= before


def test_the_child_ends_when_its_gateway_is_killed(tmp_path: Path) -> None:
    """SIGKILL gives the gateway no chance to close the store; its child must notice, or it
    would keep the folder locked and the next gateway's notes off."""
    script = textwrap.dedent(
        f"""
        import asyncio
        from pathlib import Path
        from retrieval.client_runner import ProcessRunner
        from retrieval.store import open_local_client
        from functools import partial

        async def main():
            runner = ProcessRunner()
            await runner.open(partial(open_local_client, Path({str(tmp_path / "qdrant")!r})))
            print(runner.pid, flush=True)
            await asyncio.sleep(60)

        asyncio.run(main())
        """
    )
    assert orphan_exits_after_sigkill(script), "the store's child outlived its gateway"
    # And the folder is free again.
    open_local_client(tmp_path / "qdrant").close()
