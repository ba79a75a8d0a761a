"""The threads that run the store's blocking calls for the event loop (``CallThreads``): a call
that hangs is cut off at its bound while the other thread keeps answering, its late outcome is
dropped quietly, and closing stops what has not started."""

from __future__ import annotations

import asyncio
import threading
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from notes_helpers import local_config

from retrieval.backend import StoreBackend
from retrieval.edge_backend import EdgeBackend
from retrieval.store import NotesStore
from retrieval.store_runner import CallThreads, ThreadRunner
from runtimes.errors import Unavailable

T = "acme"


def _hang(backend: StoreBackend, release: threading.Event) -> str:
    """An engine call that does not come back until ``release`` (a hung shard)."""
    release.wait(30)
    return "late"


async def test_a_hung_call_is_cut_off_and_the_other_thread_still_answers(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    loop_errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: loop_errors.append(context))
    runner = ThreadRunner(partial(EdgeBackend, local_config(tmp_path).store), threads=2)
    store = await NotesStore.open_with(runner, dim=8, embedder_name="e")
    release = threading.Event()
    try:
        with pytest.raises(Unavailable, match=r"did not answer hang within 0\.2 s"):
            await runner.run(_hang, release, timeout_s=0.2)
        # One thread is still stuck in the hung call; the other serves the real shard.
        assert await store.count_notes(T) == 0
        assert await store.search(T, [1.0] + [0.0] * 7, top_k=3) == []
        release.set()
        await asyncio.sleep(0.2)  # the late outcome arrives for a caller that has gone
    finally:
        release.set()
        await store.close()
    assert loop_errors == []


def _wait_then(release: threading.Event, value: str) -> str:
    release.wait(30)
    return value


async def test_closing_with_cancel_pending_cancels_the_calls_not_started() -> None:
    threads = CallThreads(1, "test-call-threads")
    release = threading.Event()
    running = asyncio.ensure_future(
        threads.call(_wait_then, release, "first", timeout_s=10, what="first")
    )
    queued = asyncio.ensure_future(
        threads.call(_wait_then, release, "second", timeout_s=10, what="second")
    )
    await asyncio.sleep(0.1)  # both are queued; the one thread runs the first
    closing = asyncio.ensure_future(threads.close(cancel_pending=True))
    await asyncio.sleep(0.1)
    release.set()
    await closing
    assert await running == "first"
    with pytest.raises(asyncio.CancelledError):
        await queued
    with pytest.raises(Unavailable, match="closed"):
        await threads.call(_wait_then, release, "third", timeout_s=1, what="third")


async def test_closing_runs_the_calls_already_queued() -> None:
    threads = CallThreads(1, "test-call-threads")
    release = threading.Event()
    calls = [
        asyncio.ensure_future(threads.call(_wait_then, release, v, timeout_s=10, what=v))
        for v in ("a", "b")
    ]
    await asyncio.sleep(0.1)
    closing = asyncio.ensure_future(threads.close())
    release.set()
    await closing
    assert [await c for c in calls] == ["a", "b"]
