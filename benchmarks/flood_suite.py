"""The ``tenant-flood`` target: does one tenant's flood reach another tenant's latency?

A gateway with a keys file of two tenants, both with rate limits: ``tenant-a`` limited to
``flood_limit`` calls/s, ``tenant-b`` to well above what it sends. Tenant B's ScoreLeads
are measured open-loop (the bench's ``--rate``, Poisson by default) alone, then while tenant A
floods ScoreLeads from a process of its own, in interleaved rounds. The flood has two forms
(``benchmarks.flood_client``), each measured in every round: closed loop (``flood_concurrency``
calls in flight; its intensity grows as refusals get cheaper) and open loop (``flood_rate``
calls/s, by default ``FLOOD_RATE_MULTIPLE`` times A's limit, whatever the answers). Most of A's
calls are refused with RESOURCE_EXHAUSTED. B's p99s are of each kind's latencies pooled over
the rounds; the target is a ratio of at most 1.25 for each form.

With ``floor`` (the default) the same rounds also run, interleaved, against the floor: a bare
grpc.aio server (``benchmarks.floor_server``) with as many processes as the gateway, on uvloop,
that answers B's ScoreLeads with the gateway's own response bytes and refuses every one of A's
calls at once with RESOURCE_EXHAUSTED and trailers like the gateway's. B's ratio at the floor is
what the flood costs B with no gateway at all on this machine; the gateway's ratio is reported as
a multiple of it.
"""

from __future__ import annotations

import asyncio
import hashlib
import multiprocessing
import os
import queue as queue_module
import secrets
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.flood_client import FloodCounts, FloodPlan, flood_main
from benchmarks.progress import ProgressSink
from benchmarks.results import RunResult
from benchmarks.runner import run_load
from benchmarks.servers import ServerProcess, ServerStartError, start_listening_server
from benchmarks.summary_suite import pooled_p99_ms, round_ratios
from benchmarks.targets import GrpcUnaryTarget, Preflight, TargetError

if TYPE_CHECKING:
    from benchmarks.loadgen import LoadShape
    from benchmarks.suite import BenchConfig

P99_TARGET_RATIO = 1.25  # issue 14: the flood raises the other tenant's p99 by at most 25%
FLOODER, STEADY = "tenant-a", "tenant-b"
STEADY_HEADROOM = 5.0  # tenant B's own limit, as a multiple of the rate it is sent
FLOOD_START_TIMEOUT_S = 30.0
FLOOD_RATE_MULTIPLE = 10.0  # the open-loop flood's default rate, as a multiple of A's limit
FLOOD_FORMS = ("closed", "open")


@dataclass(frozen=True, slots=True)
class FloodBenchPlan:
    rate: float = 200.0  # tenant B's open-loop rate, calls/s
    flood_concurrency: int = 8
    flood_limit: float = 100.0  # tenant A's limit, calls/s
    rounds: int = 3
    flood_rate: float | None = None  # open loop, calls/s; None: FLOOD_RATE_MULTIPLE × the limit
    forms: tuple[str, ...] = FLOOD_FORMS
    floor: bool = True  # the same rounds against the floor (a bare grpc.aio server)
    floor_workers: int = 1  # the floor's processes: the gateway's
    max_streams: int | None = None  # the gateway's LEADGW_MAX_CONCURRENT_STREAMS; None: unset
    hold_ms: float | None = None  # the gateway's LEADGW_RATE_REFUSAL_HOLD_MS; None: its default

    @property
    def open_rate(self) -> float:
        if self.flood_rate is not None:
            return self.flood_rate
        return self.flood_limit * FLOOD_RATE_MULTIPLE


@dataclass(slots=True)
class FloodForm:
    """Tenant B while A floods in one form, over every round."""

    form: str  # closed or open
    description: str  # "8 in flight" or "1000/s open loop"
    flooded_runs: list[str]
    p99_flooded_ms: float
    p99_ratio: float | None  # flooded / alone
    met: bool | None
    round_ratios: list[float]
    flood: FloodCounts  # tenant A over this form's rounds
    flood_sent_per_s: float
    flood_ok_per_s: float  # tenant A's calls let through per second of flood
    flood_resource_exhausted: int
    flood_client_cores: float  # the flood process's own CPU (it shares the machine)
    gateway_cores: float  # the server's CPU over B's measured windows, mean of the rounds
    # The gateway's forms only, with the floor: the floor's ratio in this form, and ours over it.
    floor_ratio: float | None = None
    over_floor: float | None = None


@dataclass(slots=True)
class FloodFloor:
    """The same rounds against the floor server."""

    workers: int
    alone_runs: list[str]
    p99_alone_ms: float
    cores_alone: float
    forms: list[FloodForm]  # gateway_cores: the floor's CPU


@dataclass(slots=True)
class FloodResult:
    rate: float
    flood_concurrency: int
    flood_rate: float
    flood_limit: float
    steady_limit: float
    rounds: int
    alone_runs: list[str]  # labels in the runs list
    p99_alone_ms: float  # tenant B, pooled over the rounds
    gateway_cores_alone: float
    forms: list[FloodForm]
    met: bool | None  # every form's ratio <= target
    steady_resource_exhausted: int  # tenant B's calls refused by a limit (expected 0)
    target_ratio: float = P99_TARGET_RATIO
    floor: FloodFloor | None = None
    max_streams: int | None = None  # the gateway's per-connection stream cap; None: no cap
    hold_ms: float | None = None  # how long the gateway holds a refusal; None: its default
    exit_codes: dict[str, int | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def gateway_workers(command: tuple[str, ...]) -> int:
    """The processes ``leadgw serve`` runs: its ``--workers``, else one per CPU this process
    may run on (leadgw's default, short of a cgroup quota)."""
    if "--workers" in command:
        return int(command[command.index("--workers") + 1])
    return max(1, len(os.sched_getaffinity(0)))


def _key_entry(name: str, tenant: str, key: str) -> str:
    digest = hashlib.sha256(key.encode()).hexdigest()
    return (
        f'[[keys]]\nname = "{name}"\ntenant = "{tenant}"\nscopes = ["score"]\nsha256 = "{digest}"\n'
    )


def write_keys_file(path: Path, flood_limit: float, steady_limit: float) -> dict[str, str]:
    """Two tenants with a key each and their own request limits; returns tenant → key."""
    keys = {tenant: "lgw_" + secrets.token_urlsafe(24) for tenant in (FLOODER, STEADY)}
    path.write_text(
        _key_entry("bench-flooder", FLOODER, keys[FLOODER])
        + _key_entry("bench-steady", STEADY, keys[STEADY])
        + f"\n[tenants.{FLOODER}]\nrate_requests_per_s = {flood_limit!r}\n"
        + f"\n[tenants.{STEADY}]\nrate_requests_per_s = {steady_limit!r}\n"
    )
    return keys


def bearer(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


def gateway_env(data_dir: Path, keys_file: Path, default_limit: float) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LEADGW_"))}
    env.update(
        LEADGW_DATA_DIR=str(data_dir),
        LEADGW_LOAD_DEMO_CORPUS="false",
        LEADGW_KEYS_FILE=str(keys_file),
        # The settings' default for a tenant with no limit of its own; both have their own here.
        LEADGW_RATE_REQUESTS_PER_S=repr(default_limit),
        # Refusals only: an audit line per allowed call would be most of the work measured.
        LEADGW_AUDIT_LOG="denied",
        LEADGW_LOG_LEVEL="ERROR",
        OTEL_TRACES_EXPORTER="none",
        OTEL_METRICS_EXPORTER="none",
    )
    return env


class _Flood:
    """Tenant A's flood in a spawned process (fork and gRPC's threads do not mix)."""

    def __init__(self, plan: FloodPlan) -> None:
        context = multiprocessing.get_context("spawn")
        self.queue = context.Queue()
        self.stop = context.Event()
        self.process = context.Process(
            target=flood_main, args=(plan, self.stop, self.queue), daemon=True,
            name="leadgw-bench-flood",
        )  # fmt: skip

    def start(self) -> None:
        self.process.start()
        kind, value = self._next(FLOOD_START_TIMEOUT_S)
        if kind != "started":
            raise TargetError(f"tenant-flood: the flood did not start: {value}")

    def finish(self) -> FloodCounts:
        self.stop.set()
        try:
            kind, value = self._next(15.0)
        finally:
            self.process.join(5)
            if self.process.is_alive():
                self.process.terminate()
                self.process.join(5)
        if kind != "done":
            raise TargetError(f"tenant-flood: the flood failed: {value}")
        assert isinstance(value, FloodCounts)
        return value

    def _next(self, timeout_s: float) -> tuple[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                message: tuple[str, Any] = self.queue.get(timeout=0.2)
                return message
            except queue_module.Empty:
                if not self.process.is_alive():
                    return "failed", "the flood process died"
        return "failed", f"no word from the flood process in {timeout_s:g} s"


@dataclass(slots=True)
class _Peer:
    """One server the rounds run against: tenant B's target and A's flood plans."""

    prefix: str  # "" for the gateway, "floor: " for the floor
    steady: GrpcUnaryTarget
    preflight: Preflight
    flood_plans: dict[str, FloodPlan]
    alone: list[RunResult] = field(default_factory=list)
    flooded: dict[str, list[RunResult]] = field(default_factory=dict)
    totals: dict[str, FloodCounts] = field(default_factory=dict)


def _flood_plans(
    plan: FloodBenchPlan, score: GrpcUnaryTarget, address: str, key: str
) -> dict[str, FloodPlan]:
    args = (address, score.method, score.payloads, bearer(key), plan.flood_concurrency)
    return {
        "closed": FloodPlan(*args, score.timeout_s),
        "open": FloodPlan(*args, score.timeout_s, rate=plan.open_rate),
    }


def refusal_message(limit: float) -> str:
    """The gateway's message for a refusal of A (its delay varies; the floor's is fixed)."""
    return f"tenant {FLOODER!r} is over its rate limit of {limit:g} requests/s; retry in 10 ms"


def _start_floor(
    config: BenchConfig,
    plan: FloodBenchPlan,
    stack: ExitStack,
    tmp: Path,
    response: bytes,
    flood_key: str,
) -> ServerProcess:
    response_file, refuse_file = tmp / "floor-score-response.bin", tmp / "floor-refuse.txt"
    response_file.write_bytes(response)
    refuse_file.write_text(f"Bearer {flood_key}\n")
    command = [
        sys.executable, "-m", "benchmarks.floor_server", "--port", "0",
        "--score-response-file", str(response_file), "--refuse-keys-file", str(refuse_file),
        "--refusal-message", refusal_message(plan.flood_limit), "--retry-ms", "10",
        "--workers", str(plan.floor_workers), "--event-loop", "uvloop",
    ]  # fmt: skip
    try:
        return stack.enter_context(
            start_listening_server("flood-floor", command, config.server_ready_timeout_s)
        )
    except ServerStartError as exc:
        raise TargetError(f"tenant-flood: {exc}") from None


def run_flood(
    config: BenchConfig, plan: FloodBenchPlan, score: GrpcUnaryTarget, progress: ProgressSink
) -> tuple[list[RunResult], FloodResult]:
    """Rounds of tenant B alone and flooded, against a gateway of its own (and the floor)."""
    steady_limit = plan.rate * STEADY_HEADROOM
    with tempfile.TemporaryDirectory(prefix="leadgw-bench-flood-") as tmp, ExitStack() as stack:
        keys_file = Path(tmp) / "keys.toml"
        keys = write_keys_file(keys_file, plan.flood_limit, steady_limit)
        command = [
            *config.leadgw_command,
            "--port", "0",
            "--model-repository", str(config.model_repository),
        ]  # fmt: skip
        progress.note(
            f"tenant-flood: starting leadgw with {FLOODER} (limit {plan.flood_limit:g}/s) "
            f"and {STEADY} (limit {steady_limit:g}/s)"
        )
        env = gateway_env(Path(tmp) / "data", keys_file, plan.flood_limit)
        if plan.max_streams is not None:
            env["LEADGW_MAX_CONCURRENT_STREAMS"] = str(plan.max_streams)
        if plan.hold_ms is not None:
            env["LEADGW_RATE_REFUSAL_HOLD_MS"] = repr(plan.hold_ms)
        try:
            gateway = stack.enter_context(
                start_listening_server("leadgw-flood", command, config.server_ready_timeout_s, env)
            )
        except ServerStartError as exc:
            raise TargetError(f"tenant-flood: {exc}") from None
        steady = replace(
            score, address=gateway.address, server_pid=gateway.pid, metadata=bearer(keys[STEADY])
        )
        flooder = replace(steady, metadata=bearer(keys[FLOODER]))
        connect = config.shape.connect_timeout_s
        preflight = asyncio.run(steady.preflight(connect))
        asyncio.run(flooder.preflight(connect))  # the flooding key works before it floods
        peers = [
            _Peer("", steady, preflight, _flood_plans(plan, score, gateway.address, keys[FLOODER]))
        ]
        servers = [gateway]
        if plan.floor:
            progress.note(
                f"tenant-flood: starting the floor ({plan.floor_workers} bare grpc.aio "
                "process(es) on uvloop)"
            )
            floor = _start_floor(config, plan, stack, Path(tmp), preflight.sample, keys[FLOODER])
            floor_steady = replace(steady, address=floor.address, server_pid=floor.pid)
            floor_preflight = asyncio.run(floor_steady.preflight(connect))
            floor_plans = _flood_plans(plan, score, floor.address, keys[FLOODER])
            peers.append(_Peer(FLOOR_PREFIX, floor_steady, floor_preflight, floor_plans))
            servers.append(floor)
        shape = replace(config.shape, mode="open", rate=plan.rate)
        runs: list[RunResult] = []
        for peer in peers:
            peer.flooded = {form: [] for form in plan.forms}
            peer.totals = {form: FloodCounts() for form in plan.forms}
        for round_no in range(1, plan.rounds + 1):
            suffix = f" #{round_no}" if plan.rounds > 1 else ""
            for peer in peers:
                runs += _round(plan, peer, shape, suffix, progress)
        exit_codes = {server.name: server.stop() for server in servers}
    result = _result(plan, steady_limit, peers[0].alone, peers[0].flooded, peers[0].totals,
                     exit_codes)  # fmt: skip
    if len(peers) > 1:
        result.floor = _floor_result(plan, peers[1], result)
    return runs, result


FLOOR_PREFIX = "floor: "


def _round(
    plan: FloodBenchPlan, peer: _Peer, shape: LoadShape, suffix: str, progress: ProgressSink
) -> list[RunResult]:
    """One round against one server: B alone, then B while A floods in each form."""
    label = f"{peer.prefix}scoreleads {STEADY} alone{suffix}"
    alone = run_load(replace(peer.steady, name=label), shape, peer.preflight, progress, label)
    peer.alone.append(alone)
    runs = [alone]
    for form in plan.forms:
        how = _describe(plan, form)
        label = f"{peer.prefix}scoreleads {STEADY}, {FLOODER} flooding ({how}){suffix}"
        flood = _Flood(peer.flood_plans[form])
        progress.note(f"tenant-flood: {peer.prefix}{FLOODER} floods ({how})")
        flood.start()
        try:
            run = run_load(replace(peer.steady, name=label), shape, peer.preflight, progress, label)
        finally:
            counts = flood.finish()
        peer.totals[form].add(counts)
        peer.flooded[form].append(run)
        runs.append(run)
    return runs


def _floor_result(plan: FloodBenchPlan, peer: _Peer, gateway: FloodResult) -> FloodFloor:
    p99_alone = pooled_p99_ms(peer.alone)
    forms = [
        _form(plan, form, peer.alone, p99_alone, peer.flooded[form], peer.totals[form])
        for form in plan.forms
    ]
    for ours, floor in zip(gateway.forms, forms, strict=True):
        ours.floor_ratio = floor.p99_ratio
        if ours.p99_ratio is not None and floor.p99_ratio:
            ours.over_floor = ours.p99_ratio / floor.p99_ratio
    return FloodFloor(
        workers=plan.floor_workers,
        alone_runs=[r.target for r in peer.alone],
        p99_alone_ms=p99_alone,
        cores_alone=_gateway_cores(peer.alone),
        forms=forms,
    )


def _describe(plan: FloodBenchPlan, form: str) -> str:
    if form == "closed":
        return f"{plan.flood_concurrency} in flight"
    return f"{plan.open_rate:g}/s open loop"


def _gateway_cores(runs: list[RunResult]) -> float:
    cores = [r.server_cpu.cores for r in runs if r.server_cpu is not None]
    return sum(cores) / len(cores) if cores else 0.0


def _result(
    plan: FloodBenchPlan,
    steady_limit: float,
    alone: list[RunResult],
    flooded: dict[str, list[RunResult]],
    totals: dict[str, FloodCounts],
    exit_codes: dict[str, int | None],
) -> FloodResult:
    p99_alone = pooled_p99_ms(alone)
    forms = [
        _form(plan, form, alone, p99_alone, flooded[form], totals[form]) for form in plan.forms
    ]
    verdicts = [f.met for f in forms]
    every = alone + [r for runs in flooded.values() for r in runs]
    return FloodResult(
        rate=plan.rate,
        flood_concurrency=plan.flood_concurrency,
        flood_rate=plan.open_rate,
        max_streams=plan.max_streams,
        hold_ms=plan.hold_ms,
        flood_limit=plan.flood_limit,
        steady_limit=steady_limit,
        rounds=plan.rounds,
        alone_runs=[r.target for r in alone],
        p99_alone_ms=p99_alone,
        gateway_cores_alone=_gateway_cores(alone),
        forms=forms,
        met=None if None in verdicts else all(verdicts),
        steady_resource_exhausted=sum(r.errors.get("RESOURCE_EXHAUSTED", 0) for r in every),
        exit_codes=exit_codes,
    )


def _form(
    plan: FloodBenchPlan,
    form: str,
    alone: list[RunResult],
    p99_alone: float,
    flooded: list[RunResult],
    flood: FloodCounts,
) -> FloodForm:
    p99_flooded = pooled_p99_ms(flooded)
    ok = all(r.ok for r in alone + flooded)
    ratio = p99_flooded / p99_alone if ok and p99_alone > 0 else None
    return FloodForm(
        form=form,
        description=_describe(plan, form),
        flooded_runs=[r.target for r in flooded],
        p99_flooded_ms=p99_flooded,
        p99_ratio=ratio,
        met=None if ratio is None else ratio <= P99_TARGET_RATIO,
        round_ratios=round_ratios(alone, flooded),
        flood=flood,
        flood_sent_per_s=flood.sent / flood.seconds if flood.seconds else 0.0,
        flood_ok_per_s=flood.ok / flood.seconds if flood.seconds else 0.0,
        flood_resource_exhausted=flood.codes.get("RESOURCE_EXHAUSTED", 0),
        flood_client_cores=flood.cores,
        gateway_cores=_gateway_cores(flooded),
    )
