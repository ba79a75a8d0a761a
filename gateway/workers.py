"""``leadgw serve --workers N``: N gateway processes on one port through SO_REUSEPORT.

Each worker has its own event loop, ONNX Runtime sessions and batchers; the kernel spreads new
connections across them, and connections age out after a few seconds so that the spread is
re-drawn (``WORKER_CONNECTION_AGE_S``). Where the CPUs are the gateway's own, each worker stays
on one of them (``Settings.pin_workers``, ``worker_cpus``). The parent supervises: it prints one
ready line when every worker is serving, forwards SIGTERM/SIGINT so all of them stop gracefully,
and exits 0 only if all did. SIGHUP (reload the keys file) is forwarded to every worker once all
of them are serving. Without a Qdrant server it also hosts the one embedded store every worker
shares (:mod:`retrieval.shared_store`), started before the workers and stopped after them.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import queue
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from gateway.cpu_quota import usable_cpus
from gateway.notes_config import store_config
from gateway.rate_limits import SharedBuckets
from gateway.server import WorkerRole, upgrade_notes
from gateway.settings import Settings
from gateway.summary_process import SOCKET_NAME
from gateway.telemetry import configure_logging
from gateway.telemetry.fleet_metrics import FleetMetricsEndpoint
from retrieval.shared_store import StoreHost
from retrieval.thread_priority import lower_process_priority
from runtimes.errors import Unavailable

READY_TIMEOUT_S = 120.0
SUMMARIES_PROCESS = "leadgw-summaries"  # its multiprocessing name; workers are leadgw-<i>

# A summaries process that dies soon after it starts (a bad environment, a crash at import, out
# of memory while loading) would otherwise be started again and again at once, each start
# seconds of CPU (the ONNX models, the embedder) taken from the workers' scoring. The first
# wait, 1 s, keeps a one-off death cheap for summaries; doubling to 60 s bounds a crash loop to
# one start a minute, and a fixed cause is still picked up within a minute. A process that ran
# 60 s had loaded everything and served: its death says nothing of the next start's.
SUMMARIES_FIRST_WAIT_S = 1.0
SUMMARIES_MAX_WAIT_S = 60.0
SUMMARIES_RAN_LONG_S = 60.0


def _reserve_port(host: str, port: int) -> socket.socket:
    """Holds the port (bound, not listening) so that port 0 resolves once for every worker."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    holder = socket.socket(family, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind((host, port))
    return holder


def _worker_main(settings: Settings, role: WorkerRole, ready: Any, cpu: int | None) -> None:
    if cpu is not None:  # first: the threads started from here on are pinned as they start
        pin_process(cpu)
    if role.serves_summaries:
        lower_process_priority(settings.genai_nice)
    from gateway.server import run_event_loop, serve

    index = role.index

    def announce(gateway: Any) -> None:
        ready.put((index, os.getpid(), gateway.port))

    _stop_with_parent(os.getppid())
    try:
        code = run_event_loop(serve(settings, announce=announce, role=role), settings)
    except Exception as exc:  # the parent reports it; the worker just fails
        ready.put((index, os.getpid(), f"error: {exc}"))
        code = 2
    sys.exit(code)


def worker_cpus(settings: Settings) -> list[int] | None:
    """The CPU each worker is pinned to, by index, or None when they are not
    (``Settings.pin_workers``): the CPUs this process may use, in order, wrapping around."""
    if settings.workers < 2 or settings.pin_workers == "off":
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if settings.pin_workers == "auto" and not settings.workers == len(cpus) == usable_cpus():
        return None
    return [cpus[i % len(cpus)] for i in range(settings.workers)]


def pin_process(cpu: int) -> None:
    """Keeps every thread of this process on ``cpu``: those running now (a worker has a few
    before it starts serving, e.g. the BLAS pool numpy starts on import) and, since a thread
    inherits its creator's CPUs, every thread started after."""
    try:
        threads = [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:  # no /proc: this thread, and the threads it starts
        threads = [0]
    for tid in threads:
        with contextlib.suppress(ProcessLookupError):  # a thread that ended since the listing
            os.sched_setaffinity(tid, {cpu})


def _stop_with_parent(parent: int, every_s: float = 0.5) -> None:
    """A worker whose supervisor is gone (even killed with SIGKILL) stops as on SIGTERM:
    draining, then exiting, instead of serving the port on its own forever."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="supervisor-watch", daemon=True).start()


WORKER_CONNECTION_AGE_S = 5.0
"""Connection age in every worker when ``max_connection_age_s`` is not set. The kernel places
each connection on a worker by a hash: a client with few connections can have them all on one
worker while another idles, for as long as the connections live. Ending connections after a few
seconds (gRPC clients reconnect at once, calls in flight finish) re-draws the placement, so no
client is stuck on one worker; docs/perf explains the choice and what it cannot do (calls on one
connection always share one worker)."""


def _for_worker(settings: Settings) -> Settings:
    """Each worker serves its metrics on a loopback port of its own choosing (the supervisor's
    one endpoint on ``metrics_host:metrics_port`` carries them all, see fleet_metrics), and
    ages connections out after ``WORKER_CONNECTION_AGE_S`` unless a connection age is set."""
    update: dict[str, object] = {}
    if settings.metrics_port is not None:
        update.update(metrics_port=0, metrics_host="127.0.0.1")
    if settings.max_connection_age_s is None:
        update["max_connection_age_s"] = WORKER_CONNECTION_AGE_S
        # The age is ours, not the user's: give every summary its whole deadline to finish.
        update["max_connection_age_grace_s"] = max(
            settings.max_connection_age_grace_s, settings.summary_deadline_s
        )
    return settings.model_copy(update=update) if update else settings


def _start_fleet_metrics(settings: Settings, ports: Any) -> FleetMetricsEndpoint | None:
    if settings.metrics_port is None:
        return None
    endpoint = FleetMetricsEndpoint.start(
        settings.metrics_host,
        settings.metrics_port,
        lambda: [(index, port) for index, port in enumerate(ports) if port],
    )
    print(
        f"leadgw serve: Prometheus metrics of every worker on "
        f"http://{settings.metrics_host}:{endpoint.port}/metrics",
        file=sys.stderr,
        flush=True,
    )
    return endpoint


def _start_store(settings: Settings) -> tuple[StoreHost | None, str | None]:
    """The shared embedded store (None with a Qdrant server), or why there is none."""
    if settings.qdrant_url:
        return None, None
    try:
        return StoreHost.start(store_config(settings)), None
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
        if notes_off is None:
            # Before any worker opens the store: a data dir of an earlier version (the other
            # local embedder form) is re-embedded here, once (retrieval.reindex).
            configure_logging(settings.log_level, settings.log_format)
            asyncio.run(upgrade_notes(settings, None if store is None else store.link))
        return _supervise(settings, holder, store, notes_off)
    finally:
        if store is not None:
            store.stop()


def _supervise(
    settings: Settings, holder: socket.socket, store: StoreHost | None, notes_off: str | None
) -> int:
    context = multiprocessing.get_context("spawn")
    # One rate-limit table for all workers: a tenant's limit holds for the gateway as a whole.
    buckets = SharedBuckets.create()
    summaries = settings.summary_process and notes_off is None
    metrics_ports = context.RawArray("i", settings.workers + (1 if summaries else 0))
    try:
        fleet = _start_fleet_metrics(settings, metrics_ports)
    except OSError as exc:
        print(f"leadgw serve: cannot serve metrics: {exc}", file=sys.stderr)
        holder.close()
        return 2
    try:
        return _run(settings, holder, store, notes_off, context, buckets, metrics_ports)
    finally:
        if fleet is not None:
            fleet.stop()


def _run(
    settings: Settings,
    holder: socket.socket,
    store: StoreHost | None,
    notes_off: str | None,
    context: Any,
    buckets: SharedBuckets,
    metrics_ports: Any,
) -> int:
    port = holder.getsockname()[1]
    worker_settings = _for_worker(settings.model_copy(update={"port": port}))
    ready = context.Queue()
    cpus = worker_cpus(settings)
    link = None if store is None else store.link
    # The summaries process (summary_process): one more process, after the workers by index.
    socket_dir = None
    if len(metrics_ports) > settings.workers:
        socket_dir = tempfile.mkdtemp(prefix="leadgw-summaries-")  # 0700: this user's only
    summary_socket = None if socket_dir is None else os.path.join(socket_dir, SOCKET_NAME)
    processes = len(metrics_ports)

    def role(index: int) -> WorkerRole:
        return WorkerRole(
            index,
            link,
            notes_off,
            buckets,
            metrics_ports,
            summary_socket=summary_socket,
            serves_summaries=index == settings.workers,
            processes=processes,
        )

    def process(index: int) -> Any:
        cpu = None if cpus is None or index >= len(cpus) else cpus[index]
        name = SUMMARIES_PROCESS if index == settings.workers else f"leadgw-{index}"
        return context.Process(
            target=_worker_main, args=(worker_settings, role(index), ready, cpu), name=name
        )

    workers = [process(i) for i in range(settings.workers)]
    summarizing = [process(settings.workers)] if summary_socket is not None else []
    everyone = workers + summarizing  # by index
    # Workers install their own handlers; until they are up, the parent must not die on a signal.
    stopping = False
    started = False

    def forward(signum: int, _frame: Any) -> None:
        # The workers first: the summaries process stops once they have (it finishes the
        # summaries they relay while they drain).
        nonlocal stopping
        stopping = True
        for worker in workers if started else everyone:
            if worker.is_alive() and worker.pid is not None:
                os.kill(worker.pid, signal.SIGTERM)

    def forward_reload(_signum: int, _frame: Any) -> None:
        # Before a worker is up its SIGHUP would kill it; it reads the keys file as it starts.
        if not started or stopping:
            return
        for worker in everyone:
            if worker.is_alive() and worker.pid is not None:
                os.kill(worker.pid, signal.SIGHUP)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGHUP, forward_reload)
    summaries_started_at = time.monotonic()
    for worker in everyone:
        worker.start()
    try:
        not_ready = _wait_until_ready(everyone, ready, lambda: stopping)
    finally:
        holder.close()
    if not_ready is None:
        started = True
        pinned = "" if cpus is None else f" pinned to CPUs {', '.join(map(str, cpus))}"
        also = "" if not summarizing else f" and a summaries process (pid {summarizing[0].pid})"
        print(
            f"leadgw ready: listening on {settings.host}:{port} with {len(workers)} workers "
            f"(pids {', '.join(str(w.pid) for w in workers)}){pinned}{also}; try: leadgw score "
            f"examples/leads.jsonl --address {settings.host}:{port}",
            flush=True,
        )
    elif not stopping:
        print(f"leadgw serve: {not_ready}", file=sys.stderr)
        forward(signal.SIGTERM, None)

    def respawn() -> Any:
        assert summary_socket is not None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(summary_socket)  # the dead one's socket file
        replacement = process(settings.workers)
        replacement.start()
        return replacement

    try:
        _join_workers(
            workers,
            summarizing,
            lambda: started and not stopping,
            respawn,
            summaries_started_at=summaries_started_at,
        )
    finally:
        if socket_dir is not None:
            shutil.rmtree(socket_dir, ignore_errors=True)
    codes = [worker.exitcode for worker in workers + summarizing]
    if not started:
        if stopping and not_ready == _STOPPING:
            # Asked to stop before serving: each worker stopped, or died of the forwarded signal.
            asked = {0, -signal.SIGTERM, -signal.SIGINT}
            if all(code in asked for code in codes):
                print("leadgw serve: stopped during start-up, before serving", file=sys.stderr)
                return 0
            print(
                f"leadgw serve: stopped during start-up; worker exit codes {codes}", file=sys.stderr
            )
        return 2  # as a single process that cannot start
    return 0 if all(code == 0 for code in codes) and not _failed_early(codes, stopping) else 1


def _join_workers(
    workers: list[Any],
    summarizing: list[Any],
    serving: Callable[[], bool],
    respawn: Callable[[], Any],
    *,
    summaries_started_at: float,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Waits for the workers to exit, starting another summaries process (``respawn``) if it
    dies while they serve, after a wait if it died soon after its start
    (``_restart_wait_s``); then stops it (SIGTERM) and waits for it. ``summarizing``: it, or
    nothing; a new one replaces it in place. ``summaries_started_at``: its start, on ``clock``."""
    wait_s = 0.0
    restart_at: float | None = None  # while the dead one waits for its replacement
    while alive := [worker for worker in workers if worker.is_alive()]:
        # Polling the workers through the wait too: their exit or a SIGTERM ends it.
        alive[0].join(0.5)
        if not summarizing or not serving():
            continue
        if restart_at is None and not summarizing[0].is_alive():
            gone, ran_s = summarizing[0], clock() - summaries_started_at
            wait_s = _restart_wait_s(ran_s, wait_s)
            restart_at = clock() + wait_s
            when = f" in {wait_s:g} s" if wait_s else ""
            print(
                f"leadgw serve: the summaries process (pid {gone.pid}) "
                f"{_exit_words(gone.exitcode or 0)}; starting another{when} "
                f"(it ran for {ran_s:.1f} s)",
                file=sys.stderr,
                flush=True,
            )
        if restart_at is not None and clock() >= restart_at:
            summarizing[0] = respawn()
            summaries_started_at, restart_at = clock(), None
    for process in summarizing:
        if process.is_alive() and process.pid is not None:
            os.kill(process.pid, signal.SIGTERM)
        process.join()


def _restart_wait_s(ran_s: float, last_wait_s: float) -> float:
    """The wait before starting another summaries process after one that ran ``ran_s``: none
    after a long run, else twice the last wait (at least the first, at most the cap)."""
    if ran_s >= SUMMARIES_RAN_LONG_S:
        return 0.0
    return min(max(2 * last_wait_s, SUMMARIES_FIRST_WAIT_S), SUMMARIES_MAX_WAIT_S)


_STOPPING = "asked to stop"


def _wait_until_ready(workers: list[Any], ready: Any, stopping: Callable[[], bool]) -> str | None:
    """None once every worker has reported ready; else why not: asked to stop, a worker
    failed or exited, or the time ran out."""
    waiting = set(range(len(workers)))
    deadline = time.monotonic() + READY_TIMEOUT_S
    while waiting:
        if stopping():
            return _STOPPING
        try:
            index, pid, status = ready.get(timeout=0.2)
        except queue.Empty:
            if stopping():  # asked while waiting: an exit since is the signal's doing
                return _STOPPING
            for index in sorted(waiting):
                worker = workers[index]
                if worker.exitcode is not None:
                    how = _exit_words(worker.exitcode)
                    return f"{_named(worker)} (pid {worker.pid}) {how} before it was ready"
            if time.monotonic() > deadline:
                late = ", ".join(_named(workers[i]) for i in sorted(waiting))
                return f"{late} did not become ready within {READY_TIMEOUT_S:g} s"
            continue
        if not isinstance(status, int):
            return f"{_named(workers[index])} (pid {pid}) failed: {status}"
        waiting.discard(index)
    return None


def _named(process: Any) -> str:
    """``worker 1`` or ``the summaries process``, from the process's name."""
    if process.name == SUMMARIES_PROCESS:
        return "the summaries process"
    return f"worker {process.name.removeprefix('leadgw-')}"


def _exit_words(code: int) -> str:
    if code < 0:
        return f"was killed by signal {signal.Signals(-code).name}"
    return f"exited with code {code}"


def _failed_early(codes: list[int | None], stopping: bool) -> bool:
    # Workers that all exited 0 without being asked to stop did not serve: that is a failure.
    return not stopping and all(code == 0 for code in codes)
