"""Where a notes store's engine lives and how its blocking calls are made.

Both runners take the same operations, module-level functions called as ``op(backend, *args)``
with plain data in and out, so the store has one code path and only the place it runs differs:

* :class:`ThreadRunner`: the engine in this process, its calls on a few threads of its own (Qdrant
  Edge and qdrant-client both release the GIL while they work, so the event loop and scoring
  keep running).
* :class:`retrieval.shared_store.SharedRunner`: the engine in the process that hosts it for every
  worker of ``serve --workers N``; calls go over a local socket.

Every call is bounded by a timeout: a hung engine turns into ``Unavailable`` for the caller, not
a request that waits forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from retrieval.backend import StoreBackend
from runtimes.errors import Unavailable

T = TypeVar("T")
BackendFactory = Callable[[], StoreBackend]


class StoreRunner(Protocol):
    pid: int
    """The process that holds the engine."""

    async def open(self) -> None: ...

    async def run(self, op: Callable[..., T], *args: Any, timeout_s: float) -> T: ...

    async def reopen(self) -> None:
        """Drops the engine and opens it again (after a failed health check)."""

    async def close(self) -> None: ...


async def bounded(awaitable: Any, timeout_s: float, what: str) -> Any:
    """``awaitable`` awaited for at most ``timeout_s``; ``Unavailable`` naming ``what`` after
    (``asyncio.timeout``: no task of its own, unlike ``wait_for`` in Python 3.11)."""
    try:
        async with asyncio.timeout(timeout_s):
            return await awaitable
    except TimeoutError:
        raise not_answered(what, timeout_s) from None


def not_answered(what: str, timeout_s: float) -> Unavailable:
    return Unavailable(f"the notes store did not answer {what} within {timeout_s:g} s")


_Call = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]


class CallThreads:
    """A few threads of their own that run blocking store calls for the event loop.

    Each call is one queue put, and its outcome goes back to the waiting coroutine with one
    ``call_soon_threadsafe``: lighter than ``run_in_executor`` + ``wait_for`` (a
    ``concurrent.futures`` future chained to an asyncio one, plus a timeout wrapper): 0.04 to
    0.25 ms less per search in interleaved A/Bs (docs/perf/2026-11-28-storeq.md). Threads,
    not one: a slow call (a bulk write) does not hold up a search behind it.
    """

    def __init__(self, threads: int, name: str) -> None:
        self._queue: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        # Daemons: an engine call still running at interpreter exit is dropped, as Edge has
        # logged every acknowledged write already; close() joins them in an orderly stop.
        self._threads = [
            threading.Thread(target=self._serve, name=f"{name}-{i}", daemon=True)
            for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()
        self._closed = False

    async def call(self, fn: Callable[..., T], *args: Any, timeout_s: float | None, what: str) -> T:
        """``fn(*args)`` on one of the threads; ``Unavailable`` when it takes longer than
        ``timeout_s`` (None: no bound). The call itself cannot be stopped and runs on."""
        if self._closed:
            raise Unavailable("the notes store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((loop, future, fn, args))
        try:
            async with asyncio.timeout(timeout_s):
                return await future
        except TimeoutError:
            assert timeout_s is not None  # only a bound can expire
            raise not_answered(what, timeout_s) from None

    def _serve(self) -> None:
        while (item := self._queue.get()) is not None:
            loop, future, fn, args = item
            try:
                result, error = fn(*args), None
            except BaseException as exc:  # handed to the caller, as an executor would
                result, error = None, exc
            # A closed loop raises RuntimeError: nobody waits for this outcome any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, future, result, error)
            del item, loop, future, fn, args, result, error

    async def close(self, *, cancel_pending: bool = False) -> None:
        """Stops the threads once the calls already queued are done (or, with
        ``cancel_pending``, cancels those not started)."""
        if self._closed:
            return
        self._closed = True
        if cancel_pending:
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[0].call_soon_threadsafe(item[1].cancel)
        for _ in self._threads:
            self._queue.put(None)
        await asyncio.to_thread(self._join)

    def _join(self) -> None:
        for thread in self._threads:
            thread.join()


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller timed out or was cancelled
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


class ThreadRunner:
    def __init__(self, factory: BackendFactory, threads: int = 2) -> None:
        self._factory = factory
        self._threads = CallThreads(threads, "notes-store")
        self._backend: StoreBackend | None = None
        self.pid = os.getpid()

    async def open(self) -> None:
        self._backend = await self._threads.call(self._factory, timeout_s=None, what="open")

    async def run(self, op: Callable[..., T], *args: Any, timeout_s: float) -> T:
        backend = self._backend
        if backend is None:
            raise Unavailable("the notes store is closed")
        what = op.__name__.strip("_").replace("_", " ")
        return await self._threads.call(op, backend, *args, timeout_s=timeout_s, what=what)

    async def reopen(self) -> None:
        await self._close_backend()
        await self.open()

    async def close(self) -> None:
        await self._close_backend()
        await self._threads.close()

    async def _close_backend(self) -> None:
        backend, self._backend = self._backend, None
        if backend is not None:
            await self._threads.call(backend.close, timeout_s=None, what="close")
