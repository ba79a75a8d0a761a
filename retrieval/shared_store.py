"""One embedded notes store for every worker of ``leadgw serve --workers N``.

Qdrant Edge locks its shard (its write-ahead log) for one opener, so only one process may own
it. The supervisor starts a :class:`StoreHost`: a child process that opens the Edge shards and
serves store operations to the workers over a Unix socket (``multiprocessing.managers``,
authenticated with a random key). Each worker reaches it through a :class:`SharedRunner`, which
takes the same operations as :class:`retrieval.store_runner.ThreadRunner` (module-level functions
of plain, picklable data called as ``op(backend, *args)``), so the store keeps one code path.

The host serves each worker connection on its own thread; Edge is thread-safe and releases the
GIL. A host that dies is restarted by the supervisor's watchdog on the same socket and key;
workers reconnect on their next call, and meanwhile get ``Unavailable``.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import queue
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.managers import BaseManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from retrieval.backend import StoreBackend
from retrieval.config import StoreConfig
from retrieval.store_runner import CallThreads, bounded
from runtimes.errors import Unavailable

T = TypeVar("T")
log = logging.getLogger("leadgw.retrieval")

# The host's engine. Module state on purpose: it exists only inside the host process, set by
# _open_backend before serving, and every served call must find it.
_backend: StoreBackend | None = None
_backend_ready = threading.Event()
_preloaded = "not started"
"""What became of loading the shards already on disk at start: loading, loaded, or why not."""


@dataclass(frozen=True, slots=True)
class StoreLink:
    """What a worker needs to reach the host: picklable, passed to each worker at spawn."""

    address: str  # Unix socket path
    authkey: bytes


class _Store:
    """The object the host serves; each worker holds a proxy to one."""

    def run(self, op: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        if not _backend_ready.wait(timeout=60) or _backend is None:
            raise Unavailable("the shared notes store has no open engine")
        return op(_backend, *args)

    def pid(self) -> int:
        return os.getpid()

    def preloaded(self) -> str:
        return _preloaded

    def close_backend(self) -> None:
        global _backend
        if _backend is not None:
            _backend.close()  # releases the shard's lock now, not at process exit
            _backend = None


class _StoreManager(BaseManager):
    if TYPE_CHECKING:  # register() below adds it

        def store(self) -> Any: ...


_StoreManager.register("store", callable=_Store)


def open_edge(config: StoreConfig) -> StoreBackend:
    from retrieval.edge_backend import EdgeBackend

    return EdgeBackend(config)


def _open_backend(config: StoreConfig, opened: Any) -> None:
    """The host's initializer: opens the engine on a thread of its own and reports the outcome
    on ``opened``; it never raises, so the supervisor learns the reason, not an EOFError."""
    exit_with_parent(os.getppid())

    def open_now() -> None:
        global _backend
        try:
            _backend = open_edge(config)
        except Exception as exc:
            opened.put(f"{type(exc).__name__}: {exc}")
            return
        _backend_ready.set()
        opened.put(None)
        _preload(_backend)

    threading.Thread(target=open_now, name="store-host-open", daemon=True).start()


def _preload(backend: StoreBackend) -> None:
    """Loads the shards already on disk now, while the workers start (their imports and models
    take longer), instead of in the first worker's first call, which its start-up waits for.
    A shard that cannot load is left to that call, which reports why."""
    global _preloaded
    preload = getattr(backend, "preload", None)
    if preload is None:
        _preloaded = "nothing to load"
        return
    _preloaded = "loading"
    try:
        _preloaded = "loaded" if preload() else "nothing to load"
    except Exception as exc:
        _preloaded = f"{type(exc).__name__}: {exc}"
        log.warning("the notes store host did not load its shards at start: %s", exc)


def exit_with_parent(parent: int, every_s: float = 0.5) -> None:
    """Ends this (child) process once ``parent`` is gone, even killed with SIGKILL: a host that
    lingered would keep the shard locked, and the next gateway's notes off. Edge has written
    every acknowledged operation to its write-ahead log, so exiting loses nothing."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        os._exit(0)

    threading.Thread(target=watch, name="store-watchdog", daemon=True).start()


class StoreHost:
    """The supervisor's side: starts the host process, restarts it if it dies, stops it."""

    def __init__(self, config: StoreConfig, link: StoreLink, socket_dir: Path) -> None:
        self._config = config
        self.link = link
        self._socket_dir = socket_dir
        self._manager: _StoreManager | None = None
        self._stopping = threading.Event()
        self._watchdog: threading.Thread | None = None
        self.restarts = 0

    @classmethod
    def start(cls, config: StoreConfig, timeout_s: float = 60.0) -> StoreHost:
        """Opens the Edge store under ``config.data_dir`` in a new host process. Raises
        ``Unavailable`` (or the engine's own refusal) when it cannot open there."""
        socket_dir = Path(tempfile.mkdtemp(prefix="leadgw-store-"))
        link = StoreLink(str(socket_dir / "store.sock"), secrets.token_bytes(32))
        host = cls(config, link, socket_dir)
        try:
            host._launch(timeout_s)
        except BaseException:
            _remove(socket_dir)
            raise
        host._watchdog = threading.Thread(target=host._watch, name="store-host-watch", daemon=True)
        host._watchdog.start()
        return host

    @property
    def pid(self) -> int:
        process = getattr(self._manager, "_process", None)
        return int(process.pid) if process is not None and process.pid else 0

    def _launch(self, timeout_s: float) -> None:
        context = multiprocessing.get_context("spawn")  # never fork a process with gRPC threads
        Path(self.link.address).unlink(missing_ok=True)
        opened = context.Queue()
        manager = _StoreManager(address=self.link.address, authkey=self.link.authkey, ctx=context)
        try:
            manager.start(initializer=_open_backend, initargs=(self._config, opened))
            try:
                error = opened.get(timeout=timeout_s)
            except queue.Empty:
                raise TimeoutError(f"its store did not open within {timeout_s:g} s") from None
        except Exception as exc:
            with contextlib.suppress(Exception):
                manager.shutdown()
            raise Unavailable(f"the shared notes store did not start: {exc}") from exc
        if error is not None:
            with contextlib.suppress(Exception):
                manager.shutdown()
            raise Unavailable(f"the shared notes store could not open: {error}")
        self._manager = manager

    def _watch(self, every_s: float = 0.5) -> None:
        while not self._stopping.wait(every_s):
            process = getattr(self._manager, "_process", None)
            if process is None or process.is_alive():
                continue
            log.error("the notes store host (pid %s) exited; restarting it", process.pid)
            try:
                self._launch(60.0)
                self.restarts += 1
            except Unavailable:
                log.exception("the notes store host did not restart; trying again")

    def stop(self) -> None:
        """Closes the engine (releasing the shard lock) and ends the host process."""
        self._stopping.set()
        if self._watchdog is not None:
            self._watchdog.join()
        manager = self._manager
        try:
            if manager is not None:
                # A host that is already gone took its lock with it.
                with contextlib.suppress(ConnectionError, EOFError, FileNotFoundError):
                    manager.store().close_backend()
        finally:
            if manager is not None:
                manager.shutdown()
            _remove(self._socket_dir)


def _remove(socket_dir: Path) -> None:
    for path in socket_dir.glob("*"):
        path.unlink(missing_ok=True)
    socket_dir.rmdir()


class SharedRunner:
    """A worker's side: store operations sent to the host from a few threads of its own (the
    proxy gives each thread its own connection, and waiting on a socket releases the GIL)."""

    def __init__(self, link: StoreLink, threads: int = 2) -> None:
        self._link = link
        self._threads = CallThreads(threads, "store-link")
        self._store: Any = None
        self.pid = 0

    async def open(self) -> None:
        await self._connect_now()

    async def _connect_now(self) -> None:
        # Unbounded here: a reconnect bounds both calls together (``run``).
        self._store = await self._call(self._connect, timeout_s=None, what="a connect")
        self.pid = await self._call(self._store.pid, timeout_s=None, what="a connect")

    def _connect(self) -> Any:
        manager = _StoreManager(address=self._link.address, authkey=self._link.authkey)
        manager.connect()
        return manager.store()

    async def run(self, op: Callable[..., T], *args: Any, timeout_s: float) -> T:
        what = op.__name__.strip("_").replace("_", " ")
        if self._store is None:
            # The host was restarted (or never reached): connect again, within the same bound.
            await bounded(self._connect_now(), timeout_s, "a reconnect")
        try:
            result: T = await self._call(self._store.run, op, args, timeout_s=timeout_s, what=what)
        except Unavailable:
            self._store = None
            raise
        return result

    async def reopen(self) -> None:
        self._store = None
        await self._connect_now()

    async def close(self) -> None:
        """Drops this worker's connection; the engine stays open for the other workers."""
        self._store = None
        await self._threads.close(cancel_pending=True)

    async def _call(
        self, fn: Callable[..., T], *args: Any, timeout_s: float | None, what: str
    ) -> T:
        try:
            return await self._threads.call(fn, *args, timeout_s=timeout_s, what=what)
        except multiprocessing.AuthenticationError as exc:
            raise Unavailable("the shared notes store refused this worker's key") from exc
        except (ConnectionError, EOFError, FileNotFoundError) as exc:
            # The host is gone (an operation's own errors come back as themselves).
            self._store = None
            raise Unavailable(
                "the shared notes store process is unreachable; its supervisor restarts it"
            ) from exc
