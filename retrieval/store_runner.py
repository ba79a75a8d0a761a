"""Where a notes store's engine lives and how its blocking calls are made.

Both runners take the same operations, module-level functions called as ``op(backend, *args)``
with plain data in and out, so the store has one code path and only the place it runs differs:

* :class:`ThreadRunner`: the engine in this process, its calls on a small thread pool (Qdrant
  Edge and qdrant-client both release the GIL while they work, so the event loop and scoring
  keep running).
* :class:`retrieval.shared_store.SharedRunner`: the engine in the process that hosts it for every
  worker of ``serve --workers N``; calls go over a local socket.

Every call is bounded by a timeout: a hung engine turns into ``Unavailable`` for the caller, not
a request that waits forever.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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
    try:
        return await asyncio.wait_for(awaitable, timeout_s)
    except TimeoutError:
        raise Unavailable(f"the notes store did not answer {what} within {timeout_s:g} s") from None


class ThreadRunner:
    def __init__(self, factory: BackendFactory, threads: int = 2) -> None:
        self._factory = factory
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="notes-store")
        self._backend: StoreBackend | None = None
        self.pid = os.getpid()

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self._backend = await loop.run_in_executor(self._executor, self._factory)

    async def run(self, op: Callable[..., T], *args: Any, timeout_s: float) -> T:
        backend = self._backend
        if backend is None:
            raise Unavailable("the notes store is closed")
        loop = asyncio.get_running_loop()
        call = loop.run_in_executor(self._executor, op, backend, *args)
        result: T = await bounded(call, timeout_s, op.__name__.strip("_").replace("_", " "))
        return result

    async def reopen(self) -> None:
        await self._close_backend()
        await self.open()

    async def close(self) -> None:
        await self._close_backend()
        await asyncio.to_thread(self._executor.shutdown, wait=True)

    async def _close_backend(self) -> None:
        backend, self._backend = self._backend, None
        if backend is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._executor, backend.close)
