"""The Edge store a ``serve --workers N`` supervisor hosts: one owner, many workers."""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest
from notes_helpers import (
    ROOT,
    gone,
    local_config,
    make_note,
    orphan_exits_after_sigkill,
    sleep_then,
)

from retrieval.chunking import Chunker
from retrieval.config import StoreConfig
from retrieval.embedder import OnnxEmbedder
from retrieval.notes import NotesService
from retrieval.shared_store import SharedRunner, StoreHost, StoreLink
from retrieval.store import NotesStore
from runtimes.errors import Unavailable

T = "acme"


async def shared_notes(link: StoreLink, path: Path, embedder: OnnxEmbedder) -> NotesService:
    store = await NotesStore.open(
        local_config(path).store, dim=embedder.dim, embedder_name=embedder.name, shared=link
    )
    return NotesService(store, embedder, Chunker())


def count_in_another_process(link: StoreLink) -> int:
    """A second worker: a fresh interpreter that reaches the host by its link alone."""
    script = textwrap.dedent(
        f"""
        import asyncio
        from retrieval.shared_store import SharedRunner, StoreLink
        from retrieval.store import NotesStore

        async def main():
            runner = SharedRunner(StoreLink({link.address!r}, {link.authkey!r}))
            await runner.open()
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


async def test_workers_share_one_store_in_the_host(tmp_path: Path, embedder: OnnxEmbedder) -> None:
    data = tmp_path / "data"
    host = StoreHost.start(StoreConfig(data))
    try:
        first = await shared_notes(host.link, data, embedder)
        second = await shared_notes(host.link, data, embedder)
        host_pid = first._store.client_pid
        assert host_pid not in (0, os.getpid())
        assert second._store.client_pid == host_pid, "one engine, in the host"

        await first.index(T, [make_note("n1", "Wants to roll over a 401k.")])
        await second.index(T, [make_note("n2", "Asked about muni bonds.", lead_id="lead-2")])
        hits = await second.search(T, "401k rollover", top_k=3)
        assert hits[0].note.note_id == "n1", "a write through one worker is read by another"
        assert await asyncio.to_thread(count_in_another_process, host.link) == 2

        # Closing a worker's store leaves the engine open for the others.
        await first.close()
        assert await second._store.count_notes(T) == 2
        await second.close()
    finally:
        host.stop()
    assert gone(host_pid)
    # The host released the shard: a single-process store opens it again.
    again = await NotesStore.open(StoreConfig(data), dim=embedder.dim, embedder_name=embedder.name)
    assert await again.count_notes(T) == 2
    await again.close()


async def test_a_held_shard_is_refused_with_the_reason(
    tmp_path: Path, embedder: OnnxEmbedder
) -> None:
    data = tmp_path / "data"
    holder = await NotesStore.open(StoreConfig(data), dim=embedder.dim, embedder_name=embedder.name)
    try:
        host = StoreHost.start(StoreConfig(data))
        try:
            # The host starts (it opens shards on first use), but cannot take the lock.
            with pytest.raises(Unavailable, match="is in use by another process"):
                await shared_notes(host.link, data, embedder)
        finally:
            host.stop()
    finally:
        await holder.close()


async def test_a_killed_host_is_restarted_and_workers_reconnect(
    tmp_path: Path, embedder: OnnxEmbedder
) -> None:
    host = StoreHost.start(StoreConfig(tmp_path))
    notes = await shared_notes(host.link, tmp_path, embedder)
    try:
        await notes.index(T, [make_note("n1", "Wants to roll over a 401k.")])
        os.kill(notes._store.client_pid, signal.SIGKILL)
        with pytest.raises(Unavailable, match="unreachable"):
            await asyncio.wait_for(notes.count_notes(T), timeout=10)
        deadline = time.monotonic() + 60
        while host.restarts == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert host.restarts == 1
        # The next call reconnects to the new host, which reopens the shard: nothing lost.
        assert await asyncio.wait_for(notes.count_notes(T), timeout=30) == 1
    finally:
        await asyncio.wait_for(notes.close(), timeout=10)
        host.stop()


async def test_a_wrong_key_is_refused(tmp_path: Path) -> None:
    host = StoreHost.start(StoreConfig(tmp_path))
    try:
        runner = SharedRunner(StoreLink(host.link.address, b"not the key"))
        with pytest.raises(Unavailable, match="refused this worker's key"):
            await asyncio.wait_for(runner.open(), timeout=10)
        await runner.close()
    finally:
        host.stop()


def test_the_host_ends_when_its_supervisor_is_killed(tmp_path: Path) -> None:
    """SIGKILL gives the supervisor no chance to stop the host; the host must notice."""
    script = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from retrieval.config import StoreConfig
        from retrieval.shared_store import StoreHost

        host = StoreHost.start(StoreConfig(Path({str(tmp_path)!r})))
        print(host.pid, flush=True)
        time.sleep(60)
        """
    )
    assert orphan_exits_after_sigkill(script), "the host outlived its supervisor"
    # And the shard is free again.
    StoreHost.start(StoreConfig(tmp_path)).stop()


def test_stop_leaves_no_process(tmp_path: Path) -> None:
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    host = StoreHost.start(StoreConfig(tmp_path))
    pid = host.pid
    assert pid not in before
    host.stop()
    assert gone(pid)


def _preload_state(host: StoreHost) -> str:
    """The host's answer to "what became of loading the shards at start", once it is known."""
    for _ in range(600):
        state = host.preloaded()
        if state not in ("not started", "loading"):
            return state
        time.sleep(0.05)
    return state


async def test_the_host_loads_existing_shards_as_it_starts(
    tmp_path: Path, embedder: OnnxEmbedder
) -> None:
    """A restarted gateway's host loads the shards while the workers start, not on their
    first call; a host on an empty data dir has nothing to load."""
    data = tmp_path / "data"
    empty = StoreHost.start(StoreConfig(tmp_path / "empty"))
    try:
        assert _preload_state(empty) == "nothing to load"
    finally:
        empty.stop()
    store = await NotesStore.open(StoreConfig(data), dim=embedder.dim, embedder_name=embedder.name)
    await store.close()
    host = StoreHost.start(StoreConfig(data))
    try:
        assert _preload_state(host) == "loaded"
        # Loaded means held: the shard's lock is the host's before any worker has called.
        with pytest.raises(Unavailable, match="in use by another process"):
            await NotesStore.open(StoreConfig(data), dim=embedder.dim, embedder_name=embedder.name)
        notes = await shared_notes(host.link, data, embedder)
        await notes.close()
    finally:
        host.stop()


@pytest.fixture
async def linked(tmp_path: Path) -> AsyncIterator[tuple[StoreHost, SharedRunner]]:
    """A store host and one worker's open link to it."""
    host = StoreHost.start(StoreConfig(tmp_path))
    runner = SharedRunner(host.link)
    try:
        await runner.open()
        yield host, runner
    finally:
        await runner.close()
        host.stop()


async def test_a_late_answer_never_reaches_the_next_call(
    linked: tuple[StoreHost, SharedRunner],
) -> None:
    """A call that times out leaves its answer on the wire; the next call must get its own."""
    _, runner = linked
    with pytest.raises(Unavailable, match="did not answer sleep then within"):
        await runner.run(sleep_then, 1.0, "late", timeout_s=0.2)
    assert await runner.run(sleep_then, 0.0, "next", timeout_s=10) == "next"
    await asyncio.sleep(1.2)  # the late answer has been sent by now
    assert await runner.run(sleep_then, 0.0, "after", timeout_s=10) == "after"


async def test_a_slow_call_does_not_hold_up_another(
    linked: tuple[StoreHost, SharedRunner],
) -> None:
    _, runner = linked
    slow = asyncio.ensure_future(runner.run(sleep_then, 5.0, "slow", timeout_s=30))
    fast = asyncio.ensure_future(runner.run(sleep_then, 0.0, "fast", timeout_s=30))
    done, _ = await asyncio.wait({slow, fast}, return_when=asyncio.FIRST_COMPLETED)
    assert done == {fast} and fast.result() == "fast"
    assert await slow == "slow"


async def test_a_host_killed_mid_call_is_unavailable_then_serves_again(
    linked: tuple[StoreHost, SharedRunner],
) -> None:
    host, runner = linked
    call = asyncio.ensure_future(runner.run(sleep_then, 30.0, "never", timeout_s=60))
    await asyncio.sleep(0.5)  # the call is in the host
    os.kill(runner.pid, signal.SIGKILL)
    # Unreachable (the socket closed), not the 60 s bound expiring.
    with pytest.raises(Unavailable, match="unreachable"):
        await call
    deadline = time.monotonic() + 60
    while host.restarts == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert host.restarts == 1
    assert await runner.run(sleep_then, 0.0, "back", timeout_s=30) == "back"


def test_a_call_without_the_key_is_never_run(tmp_path: Path) -> None:
    """A client that skips the handshake and sends a call straight away is refused, and the
    call does not run in the host."""
    host = StoreHost.start(StoreConfig(tmp_path / "data"))
    marker = tmp_path / "ran"
    try:
        call = pickle.dumps((False, Path.touch, (marker,)))
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(host.link.address)
            assert len(sock.recv(64)) == 32  # the host's challenge
            sock.sendall(struct.pack("!Q", len(call)) + call)
            verdict = sock.recv(1)
            assert verdict == b"\x00", "refused"
            try:
                rest = sock.recv(1)
            except ConnectionResetError:  # closed with the call unread
                rest = b""
            assert rest == b"", "and the connection closed"
        # The host still serves the workers that hold the key.
        assert host.preloaded() in ("nothing to load", "loading", "not started")
    finally:
        host.stop()
    assert not marker.exists()


async def test_bulk_writes_and_long_answers_cross_the_host(
    tmp_path: Path, embedder: OnnxEmbedder
) -> None:
    """A write of many notes is pickled off the loop, and an answer of more than 64 KB
    unpickled off it; both arrive whole."""
    data = tmp_path / "data"
    host = StoreHost.start(StoreConfig(data))
    try:
        notes = await shared_notes(host.link, data, embedder)
        words = " ".join(f"annuity{i}" for i in range(200))
        batch = [make_note(f"n{i}", f"Note {i}: {words}") for i in range(40)]
        await notes.index(T, batch)
        stored = await notes._store.existing(T, [n.note_id for n in batch])
        assert sorted(stored) == sorted(n.note_id for n in batch)
        assert stored["n7"].text == batch[7].text
        await notes.close()
    finally:
        host.stop()
