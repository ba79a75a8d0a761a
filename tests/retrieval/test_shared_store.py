"""The local store a ``serve --workers N`` supervisor hosts: one client, many workers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from functools import partial
from pathlib import Path

import psutil
import pytest
from notes_helpers import gone, local_config, make_note, orphan_exits_after_sigkill

from retrieval.chunking import Chunker
from retrieval.embedder import OnnxEmbedder
from retrieval.notes import NotesService
from retrieval.shared_store import SharedRunner, StoreHost, StoreLink
from retrieval.store import NotesStore, open_local_client
from runtimes.errors import Unavailable

T = "acme"
ROOT = Path(__file__).resolve().parents[2]


async def shared_notes(link: StoreLink, path: Path, embedder: OnnxEmbedder) -> NotesService:
    store = await NotesStore.open_for(
        local_config(path), dim=embedder.dim, embedder_name=embedder.name, shared=link
    )
    return NotesService(store, embedder, Chunker())


def count_in_another_process(link: StoreLink, path: Path) -> int:
    """A second worker: a fresh interpreter that reaches the host by its link alone."""
    script = textwrap.dedent(
        f"""
        import asyncio
        from pathlib import Path
        from retrieval.shared_store import SharedRunner, StoreLink
        from retrieval.store import NotesStore

        async def main():
            runner = SharedRunner(StoreLink({link.address!r}, {link.authkey!r}))
            await runner.open(None)
            count = await NotesStore(runner).count_notes({T!r})
            await runner.close()
            print(count)

        asyncio.run(main())
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return int(out.stdout.strip())


async def test_workers_share_one_client_in_the_host(tmp_path: Path, embedder: OnnxEmbedder) -> None:
    data = tmp_path / "data"
    host = StoreHost.start(partial(open_local_client, data / "qdrant"))
    try:
        first = await shared_notes(host.link, data, embedder)
        second = await shared_notes(host.link, data, embedder)
        host_pid = first._store.client_pid
        assert host_pid not in (0, os.getpid())
        assert second._store.client_pid == host_pid, "one client, in the host"

        await first.index(T, [make_note("n1", "Wants to roll over a 401k.")])
        await second.index(T, [make_note("n2", "Asked about muni bonds.", lead_id="lead-2")])
        hits = await second.search(T, "401k rollover", top_k=3)
        assert hits[0].note.note_id == "n1", "a write through one worker is read by another"
        assert await asyncio.to_thread(count_in_another_process, host.link, data) == 2

        # Closing a worker's store leaves the client open for the others.
        await first.close()
        assert await second._store.count_notes(T) == 2
        await second.close()
    finally:
        host.stop()
    assert not psutil.pid_exists(host_pid) or psutil.Process(host_pid).status() == "zombie"
    # The host released the folder lock: a single-process store opens it again.
    again = await NotesStore.open_for(
        local_config(data), dim=embedder.dim, embedder_name=embedder.name
    )
    assert await again.count_notes(T) == 2
    await again.close()


async def test_a_locked_folder_is_refused_with_the_reason(
    tmp_path: Path, embedder: OnnxEmbedder
) -> None:
    data = tmp_path / "data"
    holder = await NotesStore.open_for(
        local_config(data), dim=embedder.dim, embedder_name=embedder.name
    )
    try:
        with pytest.raises(Unavailable, match="is in use by another process"):
            StoreHost.start(partial(open_local_client, data / "qdrant"))
    finally:
        await holder.close()


async def test_a_dead_host_gives_unavailable_not_a_hang(
    tmp_path: Path, embedder: OnnxEmbedder
) -> None:
    host = StoreHost.start(partial(open_local_client, tmp_path / "qdrant"))
    store = await NotesStore.open_for(
        local_config(tmp_path), dim=embedder.dim, embedder_name=embedder.name, shared=host.link
    )
    assert await store.count_notes(T) == 0
    try:
        os.kill(store.client_pid, signal.SIGKILL)
        for _ in range(2):  # the call that finds it dead, and every later one
            with pytest.raises(Unavailable, match="unreachable"):
                await asyncio.wait_for(store.count_notes(T), timeout=10)
    finally:
        await asyncio.wait_for(store.close(), timeout=10)
        host.stop()


async def test_a_wrong_key_is_refused(tmp_path: Path) -> None:
    host = StoreHost.start(partial(open_local_client, tmp_path / "qdrant"))
    try:
        runner = SharedRunner(StoreLink(host.link.address, b"not the key"))
        with pytest.raises(Unavailable, match="refused this worker's key"):
            await asyncio.wait_for(runner.open(None), timeout=10)  # type: ignore[arg-type]
        await runner.close()
    finally:
        host.stop()


def test_the_host_ends_when_its_supervisor_is_killed(tmp_path: Path) -> None:
    """SIGKILL gives the supervisor no chance to stop the host; the host must notice."""
    script = textwrap.dedent(
        f"""
        import time
        from functools import partial
        from pathlib import Path
        from retrieval.shared_store import SharedRunner, StoreHost
        from retrieval.store import open_local_client

        host = StoreHost.start(partial(open_local_client, Path({str(tmp_path / "qdrant")!r})))
        print(host._manager._process.pid, flush=True)
        time.sleep(60)
        """
    )
    assert orphan_exits_after_sigkill(script), "the host outlived its supervisor"
    # And the folder is free again.
    again = StoreHost.start(partial(open_local_client, tmp_path / "qdrant"))
    again.stop()


def test_a_host_that_never_opens_is_stopped(tmp_path: Path) -> None:
    """An open that hangs is bounded by ``timeout_s``, and leaves no host behind."""
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    started = time.monotonic()
    with pytest.raises(Unavailable, match="did not start: its client did not open within 1 s"):
        StoreHost.start(partial(time.sleep, 60), timeout_s=1.0)
    assert time.monotonic() - started < 30
    new = [
        p
        for p in psutil.Process().children(recursive=True)
        if p.pid not in before and not any("resource_tracker" in part for part in p.cmdline())
    ]
    assert all(gone(p.pid) for p in new), "the host outlived its failed start"
