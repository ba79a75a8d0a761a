"""Where a notes store's Qdrant client lives: a thread of this process, or a child process.

Both runners take the same operations, module-level functions called as ``op(client, *args)``,
so the store has one code path and only the place it runs differs.

* :class:`ProcessRunner` (local mode). Embedded Qdrant scores every point with numpy and checks
  payload filters in pure Python, holding the GIL for ~10-18 ms per 1,000 notes per search. Run
  in the gateway process, that stalls ScoreLeads for as long as summaries retrieve; a child
  process gives the scan its own GIL. Exactly one child: local mode locks its folder, so only
  one process may open it. Operations and their arguments are pickled, so they must be
  module-level functions taking and returning plain, picklable data.
* :class:`ThreadRunner` (server mode, and tests that wrap the client). A server does the scan;
  the client only waits on I/O, which releases the GIL, so threads cost nothing here.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol, TypeVar

from qdrant_client import QdrantClient

from runtimes.errors import Unavailable

T = TypeVar("T")
ClientFactory = Callable[[], QdrantClient]

# The child's client. Module state on purpose: it exists only inside the worker process, set by
# _open_in_worker, and each submitted operation needs to find it there.
_worker_client: QdrantClient | None = None


class ClientRunner(Protocol):
    pid: int
    """The process that holds the client."""

    async def open(self, factory: ClientFactory) -> None: ...

    async def run(self, op: Callable[..., T], *args: Any) -> T: ...

    async def close(self) -> None: ...


class ThreadRunner:
    """The client on this process's threads. A local-mode client needs ``threads=1`` (SQLite)."""

    def __init__(self, threads: int = 1) -> None:
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="qdrant")
        self._client: QdrantClient | None = None
        self.pid = os.getpid()

    async def open(self, factory: ClientFactory) -> None:
        loop = asyncio.get_running_loop()
        self._client = await loop.run_in_executor(self._executor, factory)

    async def run(self, op: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, op, self._client, *args)

    async def close(self) -> None:
        if self._client is not None:
            # Release the local-mode folder lock now, not whenever the client is collected.
            await self.run(_close_client)
            self._client = None
        await asyncio.to_thread(self._executor.shutdown, wait=True)


class ProcessRunner:
    """The client in one spawned child process that owns it until :meth:`close`."""

    def __init__(self) -> None:
        # spawn, not fork: forking a process with gRPC and ONNX Runtime threads is unsafe.
        self._executor = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=exit_with_parent,
            initargs=(os.getpid(),),
        )
        self.pid = 0

    async def open(self, factory: ClientFactory) -> None:
        """``factory`` must be picklable (a module-level function or a ``functools.partial``).

        It runs in the child, so its errors (a locked folder: Unavailable) come back as raised.
        """
        self.pid = await self._submit(_open_in_worker, factory)

    async def run(self, op: Callable[..., T], *args: Any) -> T:
        return await self._submit(_run_in_worker, op, *args)

    async def close(self) -> None:
        try:
            # A child that is already gone took its lock with it.
            with contextlib.suppress(Unavailable):
                await self._submit(_close_in_worker)
        finally:
            # wait=True joins the child: no orphan, and the folder is free once this returns.
            await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)

    async def _submit(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except BrokenProcessPool as exc:
            # Killed or crashed child: every pending and later call fails fast, none hangs.
            raise Unavailable(
                "the Qdrant local-mode store process exited unexpectedly; notes and summaries "
                "are unavailable until the gateway restarts"
            ) from exc


def exit_with_parent(parent: int, every_s: float = 0.5) -> None:
    """Ends this (child) process once ``parent`` is gone, even killed with SIGKILL: a child that
    lingered would keep the local-mode folder locked, and the next gateway's notes off. Local
    mode has committed every operation already, so exiting loses nothing."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        os._exit(0)

    threading.Thread(target=watch, name="store-watchdog", daemon=True).start()


def _close_client(client: QdrantClient) -> None:
    client.close()


def _open_in_worker(factory: ClientFactory) -> int:
    global _worker_client
    _worker_client = factory()
    return os.getpid()


def _run_in_worker(op: Callable[..., T], *args: Any) -> T:
    if _worker_client is None:
        raise Unavailable("the Qdrant local-mode store process has no open client")
    return op(_worker_client, *args)


def _close_in_worker() -> None:
    global _worker_client
    if _worker_client is not None:
        _worker_client.close()
        _worker_client = None
