"""Builds, starts and gracefully stops the gateway process."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from gateway import grpc_experiments, oip_unserved
from gateway.audit import AuditLog
from gateway.draining import CallGate
from gateway.interceptors import (
    authentication,
    chain,
    error_mapping,
    plain_registration,
    request_decoding,
    wrapped_registration,
)
from gateway.key_reload import ReloadingKeyStore
from gateway.lead_servicer import LeadServicer
from gateway.notes_config import notes_config
from gateway.notes_health import NotesHealthProbe
from gateway.oip_servicer import InferenceServicer
from gateway.rate_limits import (
    RateLimiter,
    RefusalHold,
    SharedBuckets,
    lead_rate_limiting,
    rates_from,
    request_rate_limiting,
)
from gateway.settings import Settings, is_loopback
from gateway.stall_probe import StallProbe
from gateway.summary_process import SummaryRelay, relayed_caller
from gateway.telemetry import BreakerState as GaugeBreakerState
from gateway.telemetry import Metrics, Telemetry, configure_logging, server_handler_wrapper
from gateway.tls import add_port, check_transport, server_credentials
from leadgw_client.pb.inference import grpc_service_pb2, grpc_service_pb2_grpc
from leadgw_client.pb.leadgw.v1 import lead_service_pb2, lead_service_pb2_grpc
from retrieval.demo_corpus import load_demo_corpus_if_empty
from retrieval.notes import NotesService
from retrieval.shared_store import StoreLink
from retrieval.summary import summarizer_from_settings
from retrieval.summary.guard import shared_guard_model
from runtimes.batcher import DynamicBatcher
from runtimes.control import ControlConfig, ModelControl
from runtimes.errors import LeadgwError
from runtimes.llm.breaker import BreakerState
from runtimes.repository import ModelRepository, ServedModel
from runtimes.scoring import LeadScorer
from runtimes.shadow import ShadowScorer
from runtimes.tracing import TraceDetail

log = logging.getLogger(__name__)

BREAKER_GAUGE = {
    BreakerState.CLOSED: GaugeBreakerState.CLOSED,
    BreakerState.HALF_OPEN: GaugeBreakerState.HALF_OPEN,
    BreakerState.OPEN: GaugeBreakerState.OPEN,
}

SERVICE_NAMES = (
    grpc_service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name,
    lead_service_pb2.DESCRIPTOR.services_by_name["LeadService"].full_name,
)


def server_version() -> str:
    try:
        return version("leadgw")
    except PackageNotFoundError:
        return "0+unknown"


@dataclass
class Gateway:
    """A started gateway: the gRPC server and the components it serves."""

    settings: Settings
    server: grpc.aio.Server
    port: int
    repository: ModelRepository
    health: health.aio.HealthServicer
    closers: list[Any] = field(default_factory=list)
    notes: NotesService | None = None
    keys: ReloadingKeyStore | None = None
    """The API keys, following the keys file; None without one."""
    control: ModelControl | None = None
    gate: CallGate | None = None

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.port}"

    async def stop(
        self, grace: float | None = None, drain: float | None = None, *, stop_server: bool = True
    ) -> None:
        """Drains, refuses new calls, lets in-flight RPCs finish within the grace period, cleans up.

        The drain period (health NOT_SERVING, still serving) lets load balancers move away.
        Then new calls are refused with UNAVAILABLE while the admitted ones finish. grpc's own
        stop cancels a call that reaches the server while it stops (CANCELLED, which no client
        retries), so a process about to exit passes ``stop_server=False`` and leaves the
        connections to the kernel: a call sent then fails UNAVAILABLE at the client.
        """
        await self.health.enter_graceful_shutdown()
        drain_s = self.settings.drain_s if drain is None else drain
        if drain_s > 0:
            await asyncio.sleep(drain_s)
        grace_s = self.settings.grace_period_s if grace is None else grace
        loop = asyncio.get_running_loop()
        grace_ends = loop.time() + grace_s
        if self.gate is not None:
            self.gate.close()
            if not await self.gate.wait_idle(grace_s):
                log.warning(
                    "%d calls still running at the end of the grace period", self.gate.in_flight
                )
        if stop_server:
            await self.server.stop(max(0.0, grace_ends - loop.time()))
        for close in reversed(self.closers):
            await close()
        await self.repository.close()


def _key_store(settings: Settings, *, quiet: bool = False) -> ReloadingKeyStore | None:
    """The API keys, or None (loopback only). Raises ValueError for a bad keys file or for a
    non-loopback address without one."""
    if settings.keys_file is not None:
        return ReloadingKeyStore.from_file(settings.keys_file)
    if not is_loopback(settings.host):
        raise ValueError(
            f"refusing to serve on {settings.host} without a keys file: set LEADGW_KEYS_FILE "
            "(see `leadgw keys create --help`) or bind to 127.0.0.1"
        )
    if not quiet:
        log.warning("no keys file: every caller is tenant 'default' (allowed on loopback only)")
    return None


def _check_store(settings: Settings) -> None:
    """Raises ValueError when replicas must share a Qdrant server and none is configured."""
    if settings.require_external_store and not settings.qdrant_url:
        raise ValueError(
            "require_external_store is set but no Qdrant server is configured: the embedded "
            "notes store lives in one replica's data_dir and the others would never see its "
            "notes. Set LEADGW_QDRANT_URL to a Qdrant server (docs/deployment.md)"
        )


@dataclass(frozen=True, slots=True)
class WorkerRole:
    """What a process started by ``serve --workers N`` (gateway/workers.py) is told."""

    index: int
    store: StoreLink | None = None
    """The local Qdrant store the supervisor hosts; None with a Qdrant server."""
    notes_off: str | None = None
    """Why notes and summaries are off in every worker (the store could not start)."""
    buckets: SharedBuckets | None = None
    """The per-tenant rate-limit table every worker shares (gateway/rate_limits.py)."""
    metrics_ports: Any = None
    """A shared int array: each worker writes its loopback metrics port at its index, and the
    supervisor's one endpoint reads every worker's page from there (fleet_metrics)."""
    summary_socket: str | None = None
    """The summaries process's Unix socket (``Settings.summary_process``): a worker relays
    SummarizeLead there; the summaries process serves on it. None: each worker summarises."""
    serves_summaries: bool = False
    """This is the summaries process (gateway/summary_process.py), not a worker."""
    processes: int = 0
    """The processes that apply model control together: the workers and the summaries process
    (0: ``Settings.workers``)."""


def _rate_limiter(
    settings: Settings, keys: ReloadingKeyStore | None, role: WorkerRole | None
) -> RateLimiter | None:
    """Over the table the supervisor shares between workers, or this process's own. None when
    no call can ever be limited (no default rate and no keys file, whose reloads could bring
    a tenant's own): the two rate-limit wrappers then leave the chain, two coroutine layers
    that would only check that nothing is limited (~3 µs a call isolated, ~5-19 µs of a
    worker's CPU a batch-1 call: docs/perf/2026-11-30-interleaved-ab.md)."""
    if keys is None and settings.rate_requests_per_s is None and settings.rate_leads_per_s is None:
        return None
    buckets = role.buckets if role is not None and role.buckets is not None else None
    rates = rates_from(
        None if keys is None else keys.limits_of,
        settings.rate_requests_per_s,
        settings.rate_leads_per_s,
    )
    return RateLimiter(buckets or SharedBuckets.create(), rates, settings.rate_burst_s)


async def _open_notes(settings: Settings, role: WorkerRole | None) -> NotesService | None:
    """The notes store, or None if it cannot open: scoring never waits on GenAI's parts."""
    if role is not None and role.notes_off is not None:
        log.error(
            "notes store unavailable, summaries and notes RPCs will refuse: %s", role.notes_off
        )
        return None
    if role is None:  # with workers, the supervisor did this before starting them
        await upgrade_notes(settings)
    try:
        notes = await NotesService.open(
            notes_config(settings), shared=None if role is None else role.store
        )
    except LeadgwError as exc:
        log.error("notes store unavailable, summaries and notes RPCs will refuse: %s", exc.message)
        return None
    # One worker loads the demo corpus; the supervisor announces readiness after all of them.
    if settings.load_demo_corpus and (role is None or role.index == 0):
        report = await load_demo_corpus_if_empty(notes)
        if report is not None:
            log.info(
                "loaded the demo corpus: %d notes, %d leads", report.added, report.leads_upserted
            )
    return notes


async def upgrade_notes(settings: Settings, shared: StoreLink | None = None) -> None:
    """Re-embeds a store of the other local embedder form before serving (retrieval.reindex
    upgrade_at_start); a failure is logged, and opening the store then says what is wrong."""
    from retrieval.reindex import upgrade_at_start

    try:
        report = await upgrade_at_start(notes_config(settings), shared=shared)
    except LeadgwError as exc:
        log.error("notes store: re-embedding at start stopped: %s", exc.message)
        return
    if report is not None:
        log.info(
            "notes store: every note point (%d) is now embedded with %s (were: %s)",
            report.points,
            settings.embeddings_local,
            ", ".join(report.previous),
        )


def _control_config(settings: Settings, role: WorkerRole | None) -> ControlConfig:
    """Model control for this process: one of ``workers`` when started by the supervisor."""
    return ControlConfig(
        mode=settings.model_control_mode,
        poll_secs=settings.repository_poll_secs,
        worker_index=0 if role is None else role.index,
        workers=1 if role is None else role.processes or settings.workers,
        ack_dir=settings.data_dir / "model-control",
        apply_timeout_s=settings.model_control_timeout_s,
    )


def _as_async(close: Callable[[], None]) -> Callable[[], Awaitable[None]]:
    async def closer() -> None:
        close()

    return closer


def _cancelling(task: asyncio.Task[None]) -> Callable[[], Awaitable[None]]:
    async def closer() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return closer


def _record_batch(
    metrics: Metrics, model: str, version: str, rows: int, run_s: float, waits: list[float]
) -> None:
    metrics.record_batch(model, version, rows, run_s)
    for wait in waits:
        metrics.record_queue_wait(model, version, wait)


def _trace_detail(settings: Settings) -> TraceDetail:
    return TraceDetail(full=settings.trace_detail == "full", slow_s=settings.trace_slow_ms / 1e3)


def _batcher_for(
    metrics: Metrics, trace_detail: TraceDetail, served: ServedModel
) -> DynamicBatcher:
    """Each model version batches its own concurrent requests on its own execution thread."""
    batcher = DynamicBatcher.from_config(
        served.session.run,
        served.config.batching,
        name=f"{served.name}/{served.version}",
        # No-op instruments (no reader): no callback, nor its list of waits, per batch.
        on_batch=partial(_record_batch, metrics, served.name, served.version)
        if metrics.recording
        else None,
        trace_detail=trace_detail,
        computes_on_caller=served.session.computes_on_caller,
    )
    # Unloading the version (a swap) drops its gauge with it.
    served.on_close(
        metrics.observe_queue_depth(served.name, lambda: batcher.queue_depth_rows, served.version)
    )
    return batcher


async def start(
    settings: Settings,
    *,
    metrics: Metrics | None = None,
    role: WorkerRole | None = None,
) -> Gateway:
    """Loads the models, binds the port and starts serving. Raises if it cannot.

    Telemetry is configured by the caller (``serve``): providers are process-global. ``role``:
    this process is one of ``serve --workers N``, sharing the port and the local store, or
    their summaries process (``role.serves_summaries``: SummarizeLead alone, on a Unix socket).
    """
    serves_summaries = role is not None and role.serves_summaries
    relays_summaries = role is not None and role.summary_socket is not None and not serves_summaries
    # The summaries process reads the keys file only for the tenants' summary limits: the
    # workers authenticate.
    keys = _key_store(settings, quiet=serves_summaries)
    _check_store(settings)
    check_transport(settings)
    credentials = server_credentials(settings)
    metrics = metrics or Metrics.from_provider()
    repository = ModelRepository(
        settings.model_repository,
        shadow_lane=ShadowScorer(metrics.record_shadow, metrics.record_shadow_dropped).lane,
    )
    trace_detail = _trace_detail(settings)
    loaded = await repository.load(make_batcher=partial(_batcher_for, metrics, trace_detail))
    if not repository.ready:
        raise RuntimeError(f"no model could be loaded from {settings.model_repository}")
    control = ModelControl(repository, _control_config(settings, role), metrics.record_control)
    await control.start(loaded)
    scorer = LeadScorer(
        repository,
        default_model=settings.default_model,
        max_leads=settings.max_leads_per_request,
        trace_detail=trace_detail,
    )
    closers: list[Any] = [control.close]
    if keys is not None:
        closers.append(_cancelling(asyncio.create_task(keys.watch(), name="keys-file-watch")))
    notes = await _open_notes(settings, role)
    summarizer = None
    relay = None
    if relays_summaries:
        assert role is not None and role.summary_socket is not None
        relay = SummaryRelay(role.summary_socket, settings.max_message_bytes)
        closers.append(relay.close)
    if notes is not None:
        closers.append(notes.close)
    if notes is not None and not relays_summaries:
        guard_embedder = shared_guard_model(notes.embedder, settings.guard_embed_priority)
        if guard_embedder is not None and guard_embedder is not notes.embedder:
            closers.append(guard_embedder.close)  # its own thread (the model is the notes')
        summarizer = summarizer_from_settings(
            settings,
            notes,
            scorer,
            metrics=metrics,
            tenant_limit=None if keys is None else (lambda t: keys.limits_of(t).summaries),
            on_tenant_refused=lambda tenant: metrics.record_rejection(tenant, "summaries"),
            # One model in the process for notes and the guard when they are the same one.
            guard_embedder=guard_embedder,
        )
        closers.append(summarizer.aclose)
        # Before serving (and before gc.freeze): what the first summary would otherwise load
        # beside the event loop, in the middle of other callers' requests.
        await summarizer.warm()
        llm = summarizer.llm
        if llm is not None:
            breaker = llm.breaker
            metrics.observe_breaker_state(llm.endpoint, lambda: BREAKER_GAUGE[breaker.state])
    options = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        # Alone, a second server on the same port must fail, not silently share it.
        ("grpc.so_reuseport", 0 if role is None or serves_summaries else 1),
        # The summaries process's only clients are the workers' relays: nothing to re-balance.
        *([] if serves_summaries else _connection_age_options(settings)),
    ]
    if settings.max_concurrent_streams is not None:
        options.append(("grpc.max_concurrent_streams", settings.max_concurrent_streams))
    server = grpc.aio.server(options=options)
    gate = CallGate()
    # Without a keys file there is no decision to audit (every caller is the loopback tenant):
    # no log line per request.
    audit = None if keys is None else AuditLog(metrics, allowed_too=settings.audit_log == "all")
    limiter = _rate_limiter(settings, keys, role)
    hold = RefusalHold(settings.rate_refusal_hold_ms / 1000.0)  # one count of held calls
    # Auth, tracing, error mapping and request decoding wrap each method's handler once, here,
    # rather than run as interceptors on every call; health and reflection (below) stay open and
    # untraced.
    if serves_summaries:
        wrapped = _summaries_registration(server, gate)
    else:
        wrapped = wrapped_registration(
            server,
            chain(
                gate.wrap,
                authentication(keys, audit),
                # Needs only the tenant: a flood's refusals skip decoding and the span.
                request_rate_limiting(limiter, metrics, hold),
                server_handler_wrapper(metrics=metrics),
                error_mapping,
                request_decoding,
                # Inside decoding: it counts the leads of the decoded request.
                lead_rate_limiting(limiter, metrics, hold),
            ),
        )
        grpc_service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
            InferenceServicer(
                repository, server_version(), control, max_rows=settings.max_leads_per_request
            ),
            wrapped,
        )
    lead_servicer = LeadServicer(
        scorer,
        default_max_reasons=settings.default_max_reasons,
        notes=notes,
        summarizer=summarizer,
        summary_deadline_s=settings.summary_deadline_s,
        summary_relay=relay,
    )
    closers.append(_as_async(lead_servicer.close))
    lead_service_pb2_grpc.add_LeadServiceServicer_to_server(lead_servicer, wrapped)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, plain_registration(server))
    if serves_summaries:
        assert role is not None and role.summary_socket is not None
        return await _serve_summaries(
            settings, role.summary_socket, server, repository, health_servicer, closers, notes,
            keys, control, gate,
        )  # fmt: skip
    # enable_server_reflection would pick the aio servicer only for a real aio server, and would
    # register its method as a gRPC "registered method" (see _WrappingRegistrar): done by hand.
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
        reflection.aio.ReflectionServicer(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME)
        ),
        plain_registration(server),
    )
    # Last: only a call that no servicer above serves looks here.
    wrapped.add_registered_method_handlers(oip_unserved.SERVICE, oip_unserved.handlers())
    port = add_port(server, settings, credentials)
    if port == 0:
        raise OSError(f"could not bind {settings.host}:{settings.port}")
    await server.start()
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    if settings.health_port is not None:
        closers.insert(0, await _start_health_port(settings, health_servicer, role))
    notes_probe = NotesHealthProbe(notes.health if notes is not None else None, health_servicer)
    await notes_probe.start()
    closers.append(notes_probe.stop)  # closers run last-first: the probe stops before the store
    return Gateway(
        settings,
        server,
        port,
        repository,
        health_servicer,
        closers,
        notes,
        keys=keys,
        control=control,
        gate=gate,
    )


def _summaries_registration(server: grpc.aio.Server, gate: CallGate) -> Any:
    """The summaries process's wrappers: the relayed caller in place of authentication and rate
    limits (the workers applied them), and spans without RPC metrics (the workers record each
    SummarizeLead once)."""
    return wrapped_registration(
        server,
        chain(
            gate.wrap,
            relayed_caller,
            server_handler_wrapper(metrics=None),
            error_mapping,
            request_decoding,
        ),
    )


async def _serve_summaries(
    settings: Settings,
    socket_path: str,
    server: grpc.aio.Server,
    repository: ModelRepository,
    health_servicer: health.aio.HealthServicer,
    closers: list[Any],
    notes: NotesService | None,
    keys: ReloadingKeyStore | None,
    control: ModelControl,
    gate: CallGate,
) -> Gateway:
    """Starts the summaries process's server on its Unix socket (no TLS: only this user can
    reach the socket's directory)."""
    if server.add_insecure_port(f"unix:{socket_path}") == 0:
        raise OSError(f"could not bind the summaries socket {socket_path}")
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    notes_probe = NotesHealthProbe(notes.health if notes is not None else None, health_servicer)
    await notes_probe.start()
    closers.append(notes_probe.stop)
    return Gateway(
        settings, server, 0, repository, health_servicer, closers, notes,
        keys=keys, control=control, gate=gate,
    )  # fmt: skip


async def _start_health_port(
    settings: Settings, servicer: health.aio.HealthServicer, role: WorkerRole | None
) -> Callable[[], Awaitable[None]]:
    """A plaintext server with the health service alone, for probes that cannot speak TLS.
    It shares the main server's statuses, so it reports the drain too; it stops last."""
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0 if role is None else 1)])
    health_pb2_grpc.add_HealthServicer_to_server(servicer, plain_registration(server))
    bound = server.add_insecure_port(f"{settings.host}:{settings.health_port}")
    if bound == 0:
        raise OSError(f"could not bind the health port {settings.host}:{settings.health_port}")
    await server.start()
    # The bound port, not the setting: with health_port 0 (tests) the kernel picks it.
    log.info("health service in plaintext on %s:%s", settings.host, bound)

    async def stop() -> None:
        await server.stop(0)

    return stop


def _reload_keys(gateway: Gateway) -> None:
    """SIGHUP: read the keys file again now (it is also polled for changes)."""
    if gateway.keys is None:
        log.warning("SIGHUP: no keys file to reload")
        return
    log.info("SIGHUP: reloading the keys file")
    gateway.keys.request_reload()


def _connection_age_options(settings: Settings) -> list[tuple[str, int]]:
    """gRPC's max connection age: clients reconnect, and re-balance, as connections age out."""
    if settings.max_connection_age_s is None:
        return []
    return [
        ("grpc.max_connection_age_ms", round(settings.max_connection_age_s * 1000)),
        ("grpc.max_connection_age_grace_ms", round(settings.max_connection_age_grace_s * 1000)),
    ]


def ready_line(gateway: Gateway) -> str:
    models = ", ".join(
        f"{name} v{','.join(gateway.repository.versions(name))}"
        for name in gateway.repository.names()
    )
    return (
        f"leadgw ready: listening on {gateway.address} (models: {models}); try: "
        f"leadgw score examples/leads.jsonl --address {gateway.address}"
    )


async def serve(
    settings: Settings,
    announce: Callable[[Gateway], None] | None = None,
    role: WorkerRole | None = None,
) -> int:
    """Runs until SIGTERM or SIGINT, then stops gracefully. Returns the exit code."""
    configure_logging(settings.log_level, settings.log_format)
    log.info("gRPC experiments: %s", grpc_experiments.in_effect())
    # Handlers first: a SIGTERM during start-up is a request to stop, not a crash.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    telemetry = Telemetry.configure(
        metrics_port=settings.metrics_port, metrics_host=settings.metrics_host
    )
    try:
        gateway = await start(settings, metrics=telemetry.metrics, role=role)
    except BaseException:
        await asyncio.to_thread(telemetry.shutdown)
        raise
    # Everything loaded so far (models, libraries, the store's client) lives as long as the
    # process: moving it out of the collector's reach keeps full collections from walking it,
    # which showed as 100+ ms stalls in the latency tail.
    gc.freeze()
    if role is not None and role.metrics_ports is not None and telemetry.metrics_port:
        role.metrics_ports[role.index] = telemetry.metrics_port
    probe = None
    if settings.stall_probe != "off":
        probe = StallProbe(slow_callbacks=settings.stall_probe == "debug")
        probe.start()
    if telemetry.metrics_port is not None:
        log.info(
            "Prometheus metrics on http://%s:%d/metrics",
            settings.metrics_host,
            telemetry.metrics_port,
        )
    loop.add_signal_handler(signal.SIGHUP, partial(_reload_keys, gateway))
    if stop.is_set():
        log.info("stopping: asked to stop during start-up, before serving")
    elif announce is None:
        print(ready_line(gateway), flush=True)
    else:
        announce(gateway)
    stopped = False
    try:
        await stop.wait()
        log.info(
            "stopping: draining %.1f s, then grace period %.1f s",
            settings.drain_s,
            settings.grace_period_s,
        )
        await gateway.stop(stop_server=False)
        stopped = True
    finally:
        if probe is not None:
            await probe.stop()
        if not stopped:
            await gateway.stop()
        # Flushes the last spans and closes the metrics endpoint; it blocks, so not on the loop.
        await asyncio.to_thread(telemetry.shutdown)
    log.info("stopped")
    _exit_process(0)
    return 0  # not reached


def _exit_process(code: int) -> None:
    """Ends the process at once, gRPC server still open: the kernel resets its connections, so
    a call arriving now fails UNAVAILABLE at the client. Letting grpc stop the server instead
    (here or at interpreter exit) would answer such a call CANCELLED, which clients do not retry.
    Every component is closed and the logs are flushed first."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def loop_factory(kind: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory of the ``event_loop`` setting's loop; None is asyncio's default. grpc.aio
    runs on uvloop's loop too, and the loop's own work (ready callbacks, timers, futures) runs
    for every request; uvloop does it in C (measured in docs/perf)."""
    if kind != "uvloop":
        return None
    try:
        import uvloop
    except ImportError:
        log.warning("event_loop = uvloop, but uvloop is not installed: using asyncio's loop")
        return None
    return uvloop.new_event_loop


def run_event_loop(main: Coroutine[Any, Any, int], settings: Settings) -> int:
    """Runs ``main`` to completion on the event loop ``settings.event_loop`` names."""
    with asyncio.Runner(loop_factory=loop_factory(settings.event_loop)) as runner:
        return runner.run(main)


def run_serve(settings: Settings) -> int:
    """``leadgw serve``: one process, or ``workers`` processes sharing the port."""
    try:
        if settings.workers > 1:
            from gateway.workers import run_workers

            # A bad keys file or bind address would stop every worker: say so once, start nothing.
            _key_store(settings, quiet=True)
            _check_store(settings)
            check_transport(settings, quiet=True)
            server_credentials(settings)
            return run_workers(settings)
        return run_event_loop(serve(settings), settings)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"leadgw serve: {exc}", file=sys.stderr)
        return 2
