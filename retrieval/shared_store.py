"""One local-mode Qdrant client for every worker of ``leadgw serve --workers N``.

Embedded Qdrant locks its folder, so only one process may open it. With several workers the
supervisor starts a :class:`StoreHost`: a child process that opens the client once and serves
store operations to the workers over a Unix socket (``multiprocessing.managers``, authenticated
with a random key). Each worker reaches it through a :class:`SharedRunner`, which takes the same
operations as the runners of :mod:`retrieval.client_runner` (module-level functions of plain,
picklable data called as ``op(client, *args)``), so the store keeps one code path.

The host runs one operation at a time: the client is bound to one thread (SQLite) and its scans
hold the host's GIL anyway. Exceptions an operation raises (``Unavailable``, ...) reach the
worker as themselves; a host that is gone turns into ``Unavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import queue
import secrets
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.managers import BaseManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from qdrant_client import QdrantClient

from retrieval.client_runner import exit_with_parent
from runtimes.errors import Unavailable

T = TypeVar("T")

# The host's client and the lock that keeps it on one operation at a time. Module state on
# purpose: it exists only inside the host process, set by _open_client before serving.
_client: QdrantClient | None = None
_client_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class StoreLink:
    """What a worker needs to reach the host: picklable, passed to each worker at spawn."""

    address: str  # Unix socket path
    authkey: bytes


class _Store:
    """The object the host serves; each worker holds a proxy to one."""

    def run(self, op: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        with _client_lock:
            if _client is None:
                raise Unavailable("the shared Qdrant store has no open client")
            return op(_client, *args)

    def pid(self) -> int:
        return os.getpid()

    def close_client(self) -> None:
        global _client
        with _client_lock:
            if _client is not None:
                _client.close()  # releases the folder lock now, not at process exit
                _client = None


class _StoreManager(BaseManager):
    if TYPE_CHECKING:  # register() below adds it

        def store(self) -> Any: ...


_StoreManager.register("store", callable=_Store)


def _open_client(factory: Callable[[], QdrantClient], opened: Any) -> None:
    """The host's initializer: opens the client on a thread of its own and reports the outcome
    on ``opened``. It returns at once, so the host starts serving and the supervisor's wait for
    ``opened`` is what bounds a slow or stuck open; it never raises, so the supervisor learns
    the reason instead of an EOFError."""
    exit_with_parent(os.getppid())

    def open_now() -> None:
        global _client
        try:
            client = factory()
        except Exception as exc:
            opened.put(f"{type(exc).__name__}: {exc}")
            return
        with _client_lock:
            _client = client
        opened.put(None)

    threading.Thread(target=open_now, name="store-host-open", daemon=True).start()


class StoreHost:
    """The supervisor's side: starts the host process and stops it after the workers."""

    def __init__(self, manager: _StoreManager, link: StoreLink, socket_dir: Path) -> None:
        self._manager = manager
        self.link = link
        self._socket_dir = socket_dir

    @classmethod
    def start(cls, factory: Callable[[], QdrantClient], timeout_s: float = 60.0) -> StoreHost:
        """Opens ``factory()`` (picklable) in a new host process. Raises ``Unavailable`` when
        the client cannot open there, for example because the folder is in use."""
        context = multiprocessing.get_context("spawn")  # never fork a process with gRPC threads
        socket_dir = Path(tempfile.mkdtemp(prefix="leadgw-store-"))
        link = StoreLink(str(socket_dir / "store.sock"), secrets.token_bytes(32))
        opened = context.Queue()
        manager = _StoreManager(address=link.address, authkey=link.authkey, ctx=context)
        try:
            manager.start(initializer=_open_client, initargs=(factory, opened))
            try:
                error = opened.get(timeout=timeout_s)
            except queue.Empty:
                raise TimeoutError(f"its client did not open within {timeout_s:g} s") from None
        except Exception as exc:
            # A host that started but never reported (a timeout) must not outlive this call;
            # shutdown exists only once start() got that far.
            with contextlib.suppress(Exception):
                manager.shutdown()
            _remove(socket_dir)
            raise Unavailable(f"the shared Qdrant store did not start: {exc}") from exc
        host = cls(manager, link, socket_dir)
        if error is not None:
            host.stop()
            raise Unavailable(f"the shared Qdrant store could not open its client: {error}")
        return host

    def stop(self) -> None:
        """Closes the client (releasing the folder lock) and ends the host process."""
        try:
            # A host that is already gone took its lock with it.
            with contextlib.suppress(ConnectionError, EOFError, FileNotFoundError):
                self._manager.store().close_client()
        finally:
            self._manager.shutdown()
            _remove(self._socket_dir)


def _remove(socket_dir: Path) -> None:
    for path in socket_dir.glob("*"):
        path.unlink(missing_ok=True)
    socket_dir.rmdir()


class SharedRunner:
    """A worker's side: store operations sent to the host, from a small thread pool (the proxy
    gives each thread its own connection, and waiting on a socket releases the GIL)."""

    def __init__(self, link: StoreLink, threads: int = 2) -> None:
        self._link = link
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="store-link")
        self._store: Any = None
        self.pid = 0

    async def open(self, factory: Callable[[], QdrantClient]) -> None:
        """Connects to the host. ``factory`` is unused: the host opened the one client."""
        del factory
        self._store = await self._call(self._connect)
        self.pid = await self._call(self._store.pid)

    def _connect(self) -> Any:
        manager = _StoreManager(address=self._link.address, authkey=self._link.authkey)
        manager.connect()
        return manager.store()

    async def run(self, op: Callable[..., T], *args: Any) -> T:
        if self._store is None:
            raise Unavailable("the shared Qdrant store is not connected")
        result: T = await self._call(self._store.run, op, args)
        return result

    async def close(self) -> None:
        """Drops this worker's connection; the client stays open for the other workers."""
        self._store = None
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except multiprocessing.AuthenticationError as exc:
            raise Unavailable("the shared Qdrant store refused this worker's key") from exc
        except (ConnectionError, EOFError, FileNotFoundError) as exc:
            # The host is gone (an operation's own errors come back as themselves).
            raise Unavailable(
                "the shared Qdrant store process is unreachable; notes and summaries are "
                "unavailable until the gateway restarts"
            ) from exc
