"""One embedded notes store for every worker of ``leadgw serve --workers N``.

Qdrant Edge locks its shard (its write-ahead log) for one opener, so only one process may own
it. The supervisor starts a :class:`StoreHost`: a child process that opens the Edge shards and
serves store operations to the workers over a Unix socket. Each worker reaches it through a
:class:`SharedRunner`, which takes the same operations as
:class:`retrieval.store_runner.ThreadRunner` (module-level functions of plain, picklable data
called as ``op(backend, *args)``), so the store keeps one code path.

The wire is lean on purpose (docs/perf/2026-11-28-storehop.md): a worker's event loop writes a
call to a socket of its own and awaits the answer there, with no thread of its own in between;
the host reads it on the connection's thread and runs it at once (Edge is thread-safe and
releases the GIL). One message each way: ``(on_engine, op, args)`` pickled, and
``(ok, value)`` back, each framed by an 8-byte length. A worker proves it holds the link's
random key (HMAC of a fresh challenge, both ways) before the host reads a call.

A worker keeps a few connections, one call in flight on each. A call that times out or is
cancelled closes its connection, so a late answer is never read as another call's. A host that
dies is restarted by the supervisor's watchdog on the same socket and key; workers reconnect on
their next call, and meanwhile get ``Unavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import multiprocessing
import os
import pickle
import queue
import secrets
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from retrieval.backend import StoreBackend
from retrieval.config import StoreConfig
from retrieval.store_runner import bounded
from retrieval.thread_priority import lower_process_priority
from runtimes.errors import Unavailable

T = TypeVar("T")
log = logging.getLogger("leadgw.retrieval")

# The host's engine. Module state on purpose: it exists only inside the host process, set by
# _host_main before serving, and every served call must find it.
_backend: StoreBackend | None = None
_backend_ready = threading.Event()
_preloaded = "not started"
"""What became of loading the shards already on disk at start: loading, loaded, or why not."""

_FRAME = struct.Struct("!Q")
_NONCE = 32
_ADMITTED, _REFUSED = b"\x01", b"\x00"
_HANDSHAKE_TIMEOUT_S = 10.0
_INLINE_ITEMS = 32
_INLINE_ANSWER_BYTES = 64 * 1024
"""A call with an argument of more items, or an answer of more bytes, is pickled or unpickled on
a thread: the loop keeps serving (a search's request and answer, ~3 KB each, stay inline)."""
_OPEN_TIMEOUT_S = 60.0
"""Bound on a worker's first connection (the host answers it before its engine is open)."""


@dataclass(frozen=True, slots=True)
class StoreLink:
    """What a worker needs to reach the host: picklable, passed to each worker at spawn."""

    address: str  # Unix socket path
    authkey: bytes


def _mac(key: bytes, role: bytes, nonce: bytes) -> bytes:
    return hmac.new(key, role + nonce, hashlib.sha256).digest()


# ---- the host process ----


def _on_engine(op: Callable[..., Any], *args: Any) -> Any:
    if not _backend_ready.wait(timeout=60) or _backend is None:
        raise Unavailable("the shared notes store has no open engine")
    return op(_backend, *args)


def _pid() -> int:
    return os.getpid()


def _preload_state() -> str:
    return _preloaded


def _close_backend() -> None:
    global _backend
    if _backend is not None:
        _backend.close()  # releases the shard's lock now, not at process exit
        _backend = None


def _recv_exactly(sock: socket.socket, n: int) -> bytes | None:
    """``n`` bytes, or None when the peer closed the connection first."""
    buffer = bytearray(n)
    view = memoryview(buffer)
    got = 0
    while got < n:
        count = sock.recv_into(view[got:])
        if count == 0:
            return None
        got += count
    return bytes(buffer)


def _admit(sock: socket.socket, key: bytes) -> bool:
    """The host's side of the handshake: the worker must prove the key, then the host does."""
    sock.settimeout(_HANDSHAKE_TIMEOUT_S)
    challenge = secrets.token_bytes(_NONCE)
    sock.sendall(challenge)
    reply = _recv_exactly(sock, 2 * _NONCE)
    if reply is None or not hmac.compare_digest(reply[_NONCE:], _mac(key, b"worker", challenge)):
        sock.sendall(_REFUSED)
        return False
    sock.sendall(_ADMITTED + _mac(key, b"host", reply[:_NONCE]))
    sock.settimeout(None)
    return True


def _answer(value: tuple[bool, Any]) -> bytes:
    try:
        body = pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # an outcome that cannot travel: say what it was
        error = RuntimeError(f"the store host could not send {value[1]!r}: {exc}")
        body = pickle.dumps((False, error), pickle.HIGHEST_PROTOCOL)
    return _FRAME.pack(len(body)) + body


def _serve_connection(sock: socket.socket, key: bytes) -> None:
    """One worker connection: calls read and run on this thread, one at a time."""
    with sock:
        try:
            if not _admit(sock, key):
                return
            while (header := _recv_exactly(sock, _FRAME.size)) is not None:
                body = _recv_exactly(sock, _FRAME.unpack(header)[0])
                if body is None:
                    return
                try:
                    on_engine, fn, args = pickle.loads(body)
                    value = _on_engine(fn, *args) if on_engine else fn(*args)
                    outcome: tuple[bool, Any] = (True, value)
                except BaseException as exc:  # the caller's to handle, as raised here
                    outcome = (False, exc)
                sock.sendall(_answer(outcome))
                del body, outcome
        except OSError:
            return  # the worker went away (a timed-out call closes its connection)


def _accept(listener: socket.socket, key: bytes) -> None:
    while True:
        sock, _ = listener.accept()
        threading.Thread(
            target=_serve_connection, args=(sock, key), name="store-host-conn", daemon=True
        ).start()


def open_edge(config: StoreConfig) -> StoreBackend:
    from retrieval.edge_backend import EdgeBackend

    return EdgeBackend(config)


def _host_main(config: StoreConfig, link: StoreLink, opened: Any) -> None:
    """The host process: listens, opens the engine and reports the outcome on ``opened`` (it
    never raises, so the supervisor learns the reason), then serves until it is stopped."""
    global _backend
    lower_process_priority(config.host_nice)  # first: the threads started below inherit it
    exit_with_parent(os.getppid())
    try:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(link.address)
        listener.listen(64)
    except OSError as exc:
        opened.put(f"{type(exc).__name__}: {exc}")
        return
    threading.Thread(
        target=_accept, args=(listener, link.authkey), name="store-host-accept", daemon=True
    ).start()
    try:
        _backend = open_edge(config)
    except Exception as exc:
        opened.put(f"{type(exc).__name__}: {exc}")
        return
    _backend_ready.set()
    opened.put(None)
    _preload(_backend)
    threading.Event().wait()  # serve until terminated (or the parent is gone)


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


# ---- the supervisor's side ----


class StoreHost:
    """The supervisor's side: starts the host process, restarts it if it dies, stops it."""

    def __init__(self, config: StoreConfig, link: StoreLink, socket_dir: Path) -> None:
        self._config = config
        self.link = link
        self._socket_dir = socket_dir
        self._process: Any = None
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
        process = self._process
        return int(process.pid) if process is not None and process.pid else 0

    def _launch(self, timeout_s: float) -> None:
        context = multiprocessing.get_context("spawn")  # never fork a process with gRPC threads
        Path(self.link.address).unlink(missing_ok=True)
        opened = context.Queue()
        process = context.Process(
            target=_host_main,
            args=(self._config, self.link, opened),
            name="leadgw-store-host",
            daemon=True,
        )
        try:
            process.start()
            error = _outcome(process, opened, timeout_s)
        except Exception as exc:
            _end(process)
            raise Unavailable(f"the shared notes store did not start: {exc}") from exc
        if error is not None:
            _end(process)
            raise Unavailable(f"the shared notes store could not open: {error}")
        self._process = process

    def _watch(self, every_s: float = 0.5) -> None:
        while not self._stopping.wait(every_s):
            process = self._process
            if process is None or process.is_alive():
                continue
            log.error("the notes store host (pid %s) exited; restarting it", process.pid)
            process.join()
            try:
                self._launch(60.0)
                self.restarts += 1
            except Unavailable:
                log.exception("the notes store host did not restart; trying again")

    def call(self, fn: Callable[..., T], *args: Any, timeout_s: float = 10.0) -> T:
        """``fn(*args)`` run in the host process, from this (blocking) thread."""
        with _connect_blocking(self.link, timeout_s) as sock:
            body = pickle.dumps((False, fn, args), pickle.HIGHEST_PROTOCOL)
            sock.sendall(_FRAME.pack(len(body)) + body)
            header = _recv_exactly(sock, _FRAME.size)
            answer = None if header is None else _recv_exactly(sock, _FRAME.unpack(header)[0])
        if answer is None:
            raise ConnectionError("the store host closed the connection")
        ok, value = pickle.loads(answer)
        if not ok:
            raise value
        result: T = value
        return result

    def preloaded(self) -> str:
        """What became of loading the shards already on disk as the host started."""
        return self.call(_preload_state)

    def stop(self) -> None:
        """Closes the engine (releasing the shard lock) and ends the host process."""
        self._stopping.set()
        if self._watchdog is not None:
            self._watchdog.join()
        try:
            if self._process is not None:
                # A host that is already gone took its lock with it.
                with contextlib.suppress(OSError, EOFError):
                    self.call(_close_backend)
        finally:
            if self._process is not None:
                _end(self._process)
            _remove(self._socket_dir)


def _outcome(process: Any, opened: Any, timeout_s: float) -> str | None:
    """What the host reported as it opened (None: open); a host that exits first is reported
    at once, not after the whole timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            outcome: str | None = opened.get(timeout=0.1)
            return outcome
        except queue.Empty:
            if not process.is_alive():
                raise RuntimeError(f"it exited with code {process.exitcode}") from None
    raise TimeoutError(f"its store did not open within {timeout_s:g} s")


def _end(process: Any) -> None:
    if process.pid is None:
        return
    process.terminate()
    process.join(5)
    if process.is_alive():
        process.kill()
        process.join()


def _remove(socket_dir: Path) -> None:
    for path in socket_dir.glob("*"):
        path.unlink(missing_ok=True)
    socket_dir.rmdir()


_VERDICT = 1 + hashlib.sha256().digest_size
"""The host's answer to a worker's reply: admitted or refused, then its own proof of the key."""


def _worker_reply(key: bytes, challenge: bytes) -> tuple[bytes, bytes]:
    """A worker's half of the handshake: its own challenge, and the message that carries it
    with the proof that it holds ``key``."""
    mine = secrets.token_bytes(_NONCE)
    return mine, mine + _mac(key, b"worker", challenge)


def _check_verdict(key: bytes, mine: bytes, verdict: bytes) -> None:
    """Raises unless the host admitted the worker and proved it holds ``key`` too."""
    if verdict[:1] != _ADMITTED:
        raise multiprocessing.AuthenticationError("the store host refused the key")
    if not hmac.compare_digest(verdict[1:], _mac(key, b"host", mine)):
        raise multiprocessing.AuthenticationError("the store host does not hold the key")


def _connect_blocking(link: StoreLink, timeout_s: float) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout_s)
        sock.connect(link.address)
        challenge = _recv_exactly(sock, _NONCE)
        if challenge is None:
            raise ConnectionError("the store host closed the connection")
        mine, reply = _worker_reply(link.authkey, challenge)
        sock.sendall(reply)
        _check_verdict(link.authkey, mine, _recv_exactly(sock, _VERDICT) or b"")
        return sock
    except BaseException:
        sock.close()
        raise


# ---- a worker's side ----


class _Connection:
    """One authenticated stream to the host, one call in flight at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, link: StoreLink) -> _Connection:
        reader, writer = await asyncio.open_unix_connection(link.address)
        try:
            challenge = await reader.readexactly(_NONCE)
            mine, reply = _worker_reply(link.authkey, challenge)
            writer.write(reply)
            try:
                verdict = await reader.readexactly(_VERDICT)
            except asyncio.IncompleteReadError as short:  # a refusal is one byte, then EOF
                verdict = short.partial
            _check_verdict(link.authkey, mine, verdict)
        except BaseException:
            writer.close()
            raise
        return cls(reader, writer)

    async def call(self, request: bytes) -> Any:
        self.writer.write(_FRAME.pack(len(request)) + request)
        await self.writer.drain()
        header = await self.reader.readexactly(_FRAME.size)
        return await self.reader.readexactly(_FRAME.unpack(header)[0])

    def close(self) -> None:
        self.writer.close()


class SharedRunner:
    """A worker's side: store operations sent to the host from the event loop itself, over up
    to ``connections`` sockets (one call in flight on each; waiting on a socket is a selector
    event, not a thread). A search's call and answer are pickled on the loop (~30 µs each); bulk
    writes and long answers on a thread (docs/perf/2026-11-28-storehop.md)."""

    def __init__(self, link: StoreLink, connections: int = 2) -> None:
        self._link = link
        self._slots = asyncio.Semaphore(connections)
        self._idle: list[_Connection] = []
        self._closed = False
        self.pid = 0

    async def open(self) -> None:
        self.pid = await bounded(self._call(False, _pid, ()), _OPEN_TIMEOUT_S, "a connect")

    async def run(self, op: Callable[..., T], *args: Any, timeout_s: float) -> T:
        what = op.__name__.strip("_").replace("_", " ")
        result: T = await bounded(self._call(True, op, args), timeout_s, what)
        return result

    async def reopen(self) -> None:
        self._drop_idle()
        await self.open()

    async def close(self) -> None:
        """Drops this worker's connections; the engine stays open for the other workers."""
        self._closed = True
        self._drop_idle()

    def _drop_idle(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    async def _call(self, on_engine: bool, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        if self._closed:
            raise Unavailable("the notes store is closed")
        message = (on_engine, fn, args)
        if _bulky(args):  # a bulk write: ~8 ms to pickle 1,000 notes, too long for the loop
            request = await asyncio.to_thread(pickle.dumps, message, pickle.HIGHEST_PROTOCOL)
        else:
            request = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
        async with self._slots:
            try:
                conn = self._idle.pop() if self._idle else await _Connection.open(self._link)
            except multiprocessing.AuthenticationError as exc:
                raise Unavailable("the shared notes store refused this worker's key") from exc
            except (OSError, EOFError) as exc:  # refused, missing socket, closed mid-handshake
                raise _unreachable() from exc
            try:
                answer = await conn.call(request)
            except BaseException as exc:
                # A timeout, a cancel or a lost host: the answer, if it ever comes, must not be
                # read as the next call's, so the connection goes with the call.
                conn.close()
                if isinstance(exc, OSError | EOFError):  # IncompleteReadError is an EOFError
                    self._drop_idle()  # the host is gone: its other connections are too
                    raise _unreachable() from exc
                raise
            if self._closed:
                conn.close()
            else:
                self._idle.append(conn)
        if len(answer) > _INLINE_ANSWER_BYTES:  # a long scroll: unpickled off the loop
            ok, value = await asyncio.to_thread(pickle.loads, answer)
        else:
            ok, value = pickle.loads(answer)
        if not ok:
            raise value
        return value


def _bulky(args: tuple[Any, ...]) -> bool:
    return any(isinstance(a, list | tuple) and len(a) > _INLINE_ITEMS for a in args)


def _unreachable() -> Unavailable:
    return Unavailable("the shared notes store process is unreachable; its supervisor restarts it")
