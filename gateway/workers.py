"""``leadgw serve --workers N``: N gateway processes on one port through SO_REUSEPORT.

Each worker has its own event loop, ONNX Runtime sessions and batchers; the kernel spreads new
connections across them, and connections age out after a few seconds so that the spread is
re-drawn (``WORKER_CONNECTION_AGE_S``). The parent supervises: it prints one ready line when
every worker is serving, forwards SIGTERM/SIGINT so all of them stop gracefully, and exits 0 only
if all did. Without a Qdrant server it also hosts the one embedded store every worker shares
(:mod:`retrieval.shared_store`), started before the workers and stopped after them.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import sys
from functools import partial
from typing import Any

from gateway.server import WorkerRole
from gateway.settings import Settings
from retrieval.shared_store import StoreHost
from retrieval.store import open_local_client
from runtimes.errors import Unavailable

READY_TIMEOUT_S = 120.0


def _reserve_port(host: str, port: int) -> socket.socket:
    """Holds the port (bound, not listening) so that port 0 resolves once for every worker."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    holder = socket.socket(family, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind((host, port))
    return holder


def _worker_main(settings: Settings, role: WorkerRole, ready: Any) -> None:
    from gateway.server import run_event_loop, serve

    index = role.index

    def announce(gateway: Any) -> None:
        ready.put((index, os.getpid(), gateway.port))

    try:
        code = run_event_loop(serve(settings, announce=announce, role=role), settings)
    except Exception as exc:  # the parent reports it; the worker just fails
        ready.put((index, os.getpid(), f"error: {exc}"))
        code = 2
    sys.exit(code)


WORKER_CONNECTION_AGE_S = 5.0
"""Connection age in every worker when ``max_connection_age_s`` is not set. The kernel places
each connection on a worker by a hash: a client with few connections can have them all on one
worker while another idles, for as long as the connections live. Ending connections after a few
seconds (gRPC clients reconnect at once, calls in flight finish) re-draws the placement, so no
client is stuck on one worker; docs/perf explains the choice and what it cannot do (calls on one
connection always share one worker)."""


def _for_worker(settings: Settings, index: int) -> Settings:
    """Each worker's own Prometheus port: metrics_port + index (0 stays 0: each picks one), and
    ``WORKER_CONNECTION_AGE_S`` unless a connection age is set."""
    update: dict[str, object] = {}
    if settings.metrics_port:
        update["metrics_port"] = settings.metrics_port + index
    if settings.max_connection_age_s is None:
        update["max_connection_age_s"] = WORKER_CONNECTION_AGE_S
    return settings.model_copy(update=update) if update else settings


def _start_store(settings: Settings) -> tuple[StoreHost | None, str | None]:
    """The shared local store (None with a Qdrant server), or why there is none."""
    if settings.qdrant_url:
        return None, None
    try:
        return StoreHost.start(partial(open_local_client, settings.data_dir / "qdrant")), None
    except Unavailable as exc:
        return None, exc.message


def run_workers(settings: Settings) -> int:
    try:
        holder = _reserve_port(settings.host, settings.port)
    except OSError as exc:
        print(f"leadgw serve: cannot bind {settings.host}:{settings.port}: {exc}", file=sys.stderr)
        return 2
    store, notes_off = _start_store(settings)
    try:
        return _supervise(settings, holder, store, notes_off)
    finally:
        if store is not None:
            store.stop()


def _supervise(
    settings: Settings, holder: socket.socket, store: StoreHost | None, notes_off: str | None
) -> int:
    port = holder.getsockname()[1]
    worker_settings = settings.model_copy(update={"port": port})
    context = multiprocessing.get_context("spawn")
    ready = context.Queue()
    workers = [
        context.Process(
            target=_worker_main,
            args=(
                _for_worker(worker_settings, i),
                WorkerRole(i, None if store is None else store.link, notes_off),
                ready,
            ),
            name=f"leadgw-{i}",
        )
        for i in range(settings.workers)
    ]
    # Workers install their own handlers; until they are up, the parent must not die on a signal.
    stopping = False
    started = False

    def forward(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.is_alive() and worker.pid is not None:
                os.kill(worker.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for worker in workers:
        worker.start()
    try:
        for _ in workers:
            index, pid, status = ready.get(timeout=READY_TIMEOUT_S)
            if not isinstance(status, int):
                print(f"leadgw serve: worker {index} (pid {pid}) failed: {status}", file=sys.stderr)
                forward(signal.SIGTERM, None)
                break
        else:
            started = True
            print(
                f"leadgw ready: listening on {settings.host}:{port} with {len(workers)} workers "
                f"(pids {', '.join(str(w.pid) for w in workers)}); try: leadgw score "
                f"examples/leads.jsonl --address {settings.host}:{port}",
                flush=True,
            )
    except Exception:  # queue.Empty: a worker never came up
        print("leadgw serve: workers did not become ready in time", file=sys.stderr)
        forward(signal.SIGTERM, None)
    finally:
        holder.close()
    for worker in workers:
        worker.join()
    codes = [worker.exitcode for worker in workers]
    if not started:
        return 2  # as a single process that cannot start
    return 0 if all(code == 0 for code in codes) and not _failed_early(codes, stopping) else 1


def _failed_early(codes: list[int | None], stopping: bool) -> bool:
    # Workers that all exited 0 without being asked to stop did not serve: that is a failure.
    return not stopping and all(code == 0 for code in codes)
