"""A whole bench: start what the run needs (leadgw, the transport floor, MLServer), preflight every
target, run each mode against each target in turn, stop the servers and write the report.

The GenAI targets (embed, search, summary), the serving targets (notes-search, tenant-flood,
shadow) and ``--tracing`` start what they need themselves, after the other targets have run: see
``genai`` and the ``*_suite`` modules it calls."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.floor_server import canned_response
from benchmarks.genai import genai_versions, run_genai
from benchmarks.leads import (
    Feature,
    SchemaError,
    as_matrix,
    latest_model_file,
    load_schema,
    random_rows,
    synthetic_schema,
)
from benchmarks.loadgen import LoadShape
from benchmarks.machine import load_average_1m, machine_info, package_versions
from benchmarks.mlserver_peer import DEFAULT_VENV, mlserver_version, start_mlserver
from benchmarks.oip_target import input_shape, oip_target
from benchmarks.onnx_target import OnnxFloorTarget
from benchmarks.progress import ProgressSink
from benchmarks.report import write_report
from benchmarks.results import RunResult
from benchmarks.rounds import RoundRatio, capacity_ratios, pooled, rotated, round_ratios
from benchmarks.runner import LoadError, check_shape, run_load
from benchmarks.score_target import score_leads_target
from benchmarks.servers import ServerProcess, ServerStartError, start_listening_server
from benchmarks.sweep import SweepPlan, SweepResult, run_sweep
from benchmarks.targets import Preflight, Target, TargetError

LEADGW_TARGETS = ("scoreleads", "scoreleads-columns", "modelinfer")
GENAI_TARGETS = ("embed", "search", "summary", "notes-search", "tenant-flood", "shadow")
TARGETS = (*LEADGW_TARGETS, "onnx-floor", "transport-floor", "mlserver", *GENAI_TARGETS)
MODES = ("closed", "open", "sweep")
DEFAULT_TARGETS = ("scoreleads", "modelinfer", "onnx-floor", "transport-floor")
REQUEST_POOL = 8  # distinct pre-built requests per target, cycled


class BenchError(Exception):
    """The bench cannot run as asked; the message is one line for the user."""


def leadgw_serve_command(workers: int | None = None) -> tuple[str, ...]:
    """``leadgw serve`` in this interpreter, with ``--workers`` when given."""
    command: tuple[str, ...] = (sys.executable, "-m", "gateway", "serve")
    return command if workers is None else (*command, "--workers", str(workers))


# Rounds of every closed/open load or sweep: enough to see a machine's drift, not a day's run.
MAX_ROUNDS = 20


@dataclass(frozen=True)
class BenchConfig:
    """Everything one ``leadgw bench`` run needs; every field lands in the result file."""

    targets: tuple[str, ...] = DEFAULT_TARGETS
    oip: tuple[str, ...] = ()
    modes: tuple[str, ...] = ("closed",)
    shape: LoadShape = field(default_factory=lambda: LoadShape("closed"))
    sweep: SweepPlan = field(default_factory=SweepPlan)
    model: str = "lead_scorer"
    model_repository: Path = Path("runtimes/bundled_models")
    batch: int = 1
    features: int | None = None
    timeout_s: float = 5.0
    leadgw_address: str | None = None
    leadgw_command: tuple[str, ...] = (sys.executable, "-m", "gateway", "serve")
    """How the bench starts a gateway (see ``leadgw_serve_command``)."""
    server_ready_timeout_s: float = 60.0
    mlserver_venv: Path = DEFAULT_VENV
    mlserver_parallel_workers: int = 0
    floor_stall_every: int = 0
    floor_stall_ms: float = 200.0
    floor_grpc_experiments: str | None = None
    """The transport floor's GRPC_EXPERIMENTS; None: grpc's defaults (or the bench's own)."""
    out: Path = Path("bench-results")
    plots: bool = True
    command: str = ""
    rounds: int = 1
    """Run every target's load or sweep this many times, interleaved (``rounds.py``)."""
    # GenAI targets and tracing levels (issues 5, 6, 7).
    search_notes: tuple[int, ...] = (10_000, 100_000)
    search_embedder: str = "all-MiniLM-L6-v2-onnx-int8-dq"
    """notes-search: the local embedder form the gateway runs (LEADGW_EMBEDDINGS_LOCAL)."""
    summary_notes: int = 10_000
    summary_concurrency: int = 8
    llm_first_token_ms: float = 50.0
    summary_stream_s: float = 4.0
    summary_rounds: int = 1
    summary_settings: tuple[tuple[str, str], ...] = ()
    """summary: (name, value) settings given to its gateway as LEADGW_NAME=VALUE."""
    tracing: tuple[str, ...] = ()  # "off" and sampling ratios; empty: no tracing suite
    tracing_rounds: int = 1
    # tenant-flood: tenant A's flood (closed loop: in flight; open loop: its rate, None: ten
    # times the limit) and limit; tenant B is sent --rate.
    flood_concurrency: int = 8
    flood_limit: float = 100.0
    flood_rounds: int = 3
    flood_rate: float | None = None
    flood_forms: tuple[str, ...] = ("closed", "open")
    flood_floor: bool = True  # the same rounds against a bare grpc.aio server, for B's floor
    flood_max_streams: int | None = None  # the flood gateway's per-connection stream cap
    flood_hold_ms: float | None = None  # the flood gateway's refusal hold; None: its default
    # shadow: where the candidate version comes from, and the rate (--rate or half of capacity).
    shadow_source: str = "train"
    shadow_half_capacity: bool = False
    shadow_rounds: int = 3
    shadow_rates: tuple[float, ...] = (1.0,)  # shares of leads the shadow compares, each a run


@dataclass
class BenchOutcome:
    json_path: Path
    markdown_path: Path
    runs: list[RunResult]
    sweeps: list[SweepResult]
    report: dict[str, Any]
    exit_code: int = 0
    message: str = ""


@dataclass
class _Prepared:
    targets: list[Target] = field(default_factory=list)
    preflights: dict[str, Preflight] = field(default_factory=dict)
    info: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    servers: dict[str, ServerProcess] = field(default_factory=dict)
    extra_versions: dict[str, str | None] = field(default_factory=dict)
    schema: list[Feature] = field(default_factory=list)
    batches: list[list[list[object]]] = field(default_factory=list)
    # Filled by the GenAI targets and --tracing, which stop their own servers.
    genai: dict[str, Any] = field(default_factory=dict)
    exit_codes: dict[str, int | None] = field(default_factory=dict)
    # --rounds above 1: each closed/open round's runs by mode, and the rounds' ratios.
    rounds: dict[str, list[list[dict[str, Any]]]] = field(default_factory=dict)
    round_ratios: list[RoundRatio] = field(default_factory=list)
    # --rounds above 1 with --mode sweep: each target's capacity over each reference's.
    sweep_ratios: list[RoundRatio] = field(default_factory=list)


def validate(config: BenchConfig) -> None:
    unknown = [t for t in config.targets if t not in TARGETS]
    if unknown:
        raise BenchError(f"unknown target {unknown[0]!r}; choose from {', '.join(TARGETS)}")
    bad_modes = [m for m in config.modes if m not in MODES]
    if bad_modes:
        raise BenchError(f"unknown mode {bad_modes[0]!r}; choose from {', '.join(MODES)}")
    if not config.targets and not config.oip:
        raise BenchError("no target to run; pass --targets or --oip")
    if config.batch < 1:
        raise BenchError("--batch must be at least 1")
    if not 1 <= config.rounds <= MAX_ROUNDS:
        raise BenchError(f"--rounds must be between 1 and {MAX_ROUNDS}, not {config.rounds}")
    if config.tracing:
        if not set(LEADGW_TARGETS) & set(config.targets):
            raise BenchError(
                "--tracing needs a leadgw target: scoreleads, scoreleads-columns or modelinfer"
            )
        if config.leadgw_address is not None:
            raise BenchError("--tracing starts a gateway per level; drop --leadgw-address")
    searches = [t for t in ("search", "notes-search") if t in config.targets]
    if searches and not config.search_notes:
        raise BenchError("--search-notes: give at least one store size")
    if config.shadow_source not in ("train", "copy"):
        raise BenchError(f"--shadow-source {config.shadow_source!r}: choose train or copy")
    if not config.shadow_rates or not all(0.0 <= r <= 1.0 for r in config.shadow_rates):
        raise BenchError(f"--shadow-rate {list(config.shadow_rates)}: each must be in [0, 1]")
    if len(set(config.shadow_rates)) != len(config.shadow_rates):
        raise BenchError(f"--shadow-rate {list(config.shadow_rates)}: each rate once")
    for spec in config.oip:
        _parse_oip(spec)


def _parse_oip(spec: str) -> tuple[str, str, str]:
    """``[NAME=]HOST:PORT/MODEL`` → (name, address, model)."""
    name, _, rest = spec.rpartition("=")
    address, slash, model = rest.partition("/")
    if not slash or not model or ":" not in address:
        raise BenchError(f"--oip {spec!r}: expected [NAME=]HOST:PORT/MODEL")
    return name or f"oip:{address}/{model}", address, model


def _schema(config: BenchConfig) -> list[Feature]:
    """Feature columns from the model's config, --features, the ONNX file, or an OIP endpoint."""
    try:
        return load_schema(config.model_repository, config.model)
    except SchemaError as exc:
        needs = [
            t for t in ("scoreleads", "summary", "tenant-flood", "shadow") if t in config.targets
        ]
        if needs:
            raise BenchError(f"{needs[0]} needs the model's feature schema: {exc}") from None
        missing = str(exc)
    if config.features:
        return synthetic_schema(config.features)
    try:
        path = latest_model_file(config.model_repository, config.model)
        import onnxruntime as ort

        columns = (
            ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            .get_inputs()[0]
            .shape[1]
        )
        if isinstance(columns, int):
            return synthetic_schema(columns)
    except SchemaError:
        pass
    if config.oip:
        _, address, model = _parse_oip(config.oip[0])
        try:
            _, columns = asyncio.run(input_shape(address, model, config.shape.connect_timeout_s))
        except TargetError as exc:
            raise BenchError(str(exc)) from None
        return synthetic_schema(columns)
    raise BenchError(f"cannot tell the model's feature columns ({missing}); pass --features")


def _preflight(target: Target, timeout_s: float) -> Preflight:
    return asyncio.run(target.preflight(timeout_s))


def _add(prepared: _Prepared, target: Target, kind: str, where: str, timeout_s: float) -> Preflight:
    preflight = _preflight(target, timeout_s)
    prepared.targets.append(target)
    prepared.preflights[target.name] = preflight
    prepared.info[target.name] = {
        "kind": kind,
        "where": where,
        "request_bytes": preflight.request_bytes,
        "response_bytes": preflight.response_bytes,
        "detail": preflight.detail,
        "server_pid": target.server_pid,
    }
    return preflight


def prepare(
    config: BenchConfig, stack: ExitStack, progress: ProgressSink, scratch: Path
) -> _Prepared:
    """Start the servers the run needs and preflight every target, in the order given."""
    schema = _schema(config)
    rng = random.Random(config.shape.seed)
    batches = [random_rows(schema, config.batch, rng) for _ in range(REQUEST_POOL)]
    matrices = [as_matrix(schema, rows) for rows in batches]
    timeout, connect = config.timeout_s, config.shape.connect_timeout_s
    prepared = _Prepared(schema=schema, batches=batches)
    leadgw_response: bytes | None = None

    # With --tracing the leadgw targets run only in the tracing suite, on gateways of its own.
    on_shared_gateway = [] if config.tracing else [t for t in config.targets if t in LEADGW_TARGETS]
    leadgw_address, leadgw_pid = config.leadgw_address, None
    if leadgw_address is None and on_shared_gateway:
        command = [
            *config.leadgw_command,
            "--port", "0",
            "--model-repository", str(config.model_repository),
        ]  # fmt: skip
        progress.note(f"starting leadgw: {' '.join(command)}")
        try:
            server = stack.enter_context(
                start_listening_server("leadgw", command, config.server_ready_timeout_s)
            )
        except ServerStartError as exc:
            raise BenchError(str(exc)) from None
        prepared.servers["leadgw"] = server
        leadgw_address, leadgw_pid = server.address, server.pid

    for name in config.targets:
        if name in GENAI_TARGETS or (name in LEADGW_TARGETS and name not in on_shared_gateway):
            continue  # run by run_genai, which starts what they need
        if name in ("scoreleads", "scoreleads-columns"):
            assert leadgw_address is not None
            columns = name == "scoreleads-columns"
            target: Target = score_leads_target(
                name,
                leadgw_address,
                config.model,
                schema,
                batches,
                timeout,
                leadgw_pid,
                columns=columns,
            )
            kind = "leadgw LeadService.ScoreLeads" + (", leads column-wise" if columns else "")
            _add(prepared, target, kind, leadgw_address, connect)
        elif name == "modelinfer":
            assert leadgw_address is not None
            target = oip_target(name, leadgw_address, config.model, matrices, timeout, leadgw_pid)
            preflight = _add(prepared, target, "leadgw OIP ModelInfer", leadgw_address, connect)
            leadgw_response = preflight.sample
        elif name == "onnx-floor":
            try:
                path = latest_model_file(config.model_repository, config.model)
            except SchemaError as exc:
                raise BenchError(f"onnx-floor: {exc}") from None
            target = OnnxFloorTarget(name, path, matrices)
            kind = "compute floor: ONNX Runtime in-process, one call at a time in one process"
            _add(prepared, target, kind, str(path), connect)
        elif name == "transport-floor":
            server = _start_floor(config, stack, scratch, len(schema), leadgw_response)
            prepared.servers[name] = server
            target = oip_target(name, server.address, config.model, matrices, timeout, server.pid)
            experiments = config.floor_grpc_experiments
            _add(
                prepared,
                target,
                "transport floor: bare grpc.aio OIP server"
                + ("" if experiments is None else f", GRPC_EXPERIMENTS={experiments or '(none)'}"),
                server.address,
                connect,
            )
        elif name == "mlserver":
            _add_mlserver(config, stack, prepared, matrices, progress)
    for spec in config.oip:
        name, address, model = _parse_oip(spec)
        target = oip_target(name, address, model, matrices, timeout)
        _add(prepared, target, "OIP ModelInfer endpoint", address, connect)
    return prepared


def _start_floor(
    config: BenchConfig,
    stack: ExitStack,
    scratch: Path,
    features: int,
    leadgw_response: bytes | None,
) -> ServerProcess:
    # The floor answers with leadgw's own ModelInfer response when there is one: same bytes.
    response_file = scratch / "floor-response.bin"
    response_file.write_bytes(
        leadgw_response or canned_response(config.batch, features, config.model)
    )
    command = [
        sys.executable, "-m", "benchmarks.floor_server", "--port", "0",
        "--response-file", str(response_file),
        "--stall-every", str(config.floor_stall_every), "--stall-ms", str(config.floor_stall_ms),
    ]  # fmt: skip
    env = None
    if config.floor_grpc_experiments is not None:
        env = dict(os.environ, GRPC_EXPERIMENTS=config.floor_grpc_experiments)
    try:
        return stack.enter_context(
            start_listening_server(
                "transport-floor", command, config.server_ready_timeout_s, env=env
            )
        )
    except ServerStartError as exc:
        raise BenchError(str(exc)) from None


def _add_mlserver(
    config: BenchConfig,
    stack: ExitStack,
    prepared: _Prepared,
    matrices: list[np.ndarray],
    progress: ProgressSink,
) -> None:
    """MLServer is a peer: when it cannot run, the bench says why and goes on without it."""
    version = mlserver_version(config.mlserver_venv)
    prepared.extra_versions["mlserver"] = version
    try:
        if version is None:
            raise ServerStartError(
                f"not installed in {config.mlserver_venv} (run benchmarks/mlserver/setup.sh)"
            )
        path = latest_model_file(config.model_repository, config.model)
        progress.note(f"starting MLServer {version} from {config.mlserver_venv}")
        server = stack.enter_context(
            start_mlserver(
                config.mlserver_venv,
                config.model,
                path,
                config.mlserver_parallel_workers,
                max(config.server_ready_timeout_s, 120.0),
            )
        )
        prepared.servers["mlserver"] = server
        target = oip_target(
            "mlserver", server.address, config.model, matrices, config.timeout_s, server.pid
        )
        _add(
            prepared,
            target,
            f"MLServer {version} V2 gRPC, custom ONNX Runtime runtime, "
            f"parallel_workers={config.mlserver_parallel_workers}",
            server.address,
            config.shape.connect_timeout_s,
        )
    except (ServerStartError, SchemaError, TargetError) as exc:
        reason = str(exc).removeprefix("mlserver: ")
        prepared.skipped["mlserver"] = reason
        progress.note(f"mlserver skipped: {reason}")


def execute(
    config: BenchConfig, prepared: _Prepared, progress: ProgressSink
) -> tuple[list[RunResult], list[SweepResult]]:
    runs: list[RunResult] = []
    sweeps: list[SweepResult] = []
    for mode in config.modes:
        if mode == "sweep":
            sweeps += _sweep_rounds(config, prepared, progress)
            continue
        runs += _run_rounds(config, prepared, progress, mode)
    if config.tracing or set(GENAI_TARGETS) & set(config.targets):
        prepared.extra_versions.update(genai_versions())
    runs += run_genai(config, prepared.schema, prepared.batches, prepared.genai,
                      prepared.exit_codes, progress)  # fmt: skip
    return runs, sweeps


def _run_rounds(
    config: BenchConfig, prepared: _Prepared, progress: ProgressSink, mode: str
) -> list[RunResult]:
    """One mode's runs: each target once, or ``config.rounds`` times interleaved and pooled, the
    rounds' ratios going to ``prepared.round_ratios``."""
    shape = replace(config.shape, mode="closed" if mode == "closed" else "open")
    load = f"c={shape.concurrency}" if mode == "closed" else f"{shape.rate:g}/s"
    rounds: list[dict[str, RunResult]] = []
    for index in range(config.rounds):
        one: dict[str, RunResult] = {}
        of = f" round {index + 1}/{config.rounds}" if config.rounds > 1 else ""
        for target in rotated(prepared.targets, index):
            preflight = prepared.preflights[target.name]
            label = f"{target.name} {mode} {load}{of}"
            one[target.name] = run_load(target, shape, preflight, progress, label)
        rounds.append(one)
    names = [target.name for target in prepared.targets]
    if config.rounds > 1:
        prepared.round_ratios += round_ratios(mode, rounds)
        # Each round's runs in the order they ran.
        prepared.rounds[mode] = [
            [_without_histogram(run) for run in one.values()] for one in rounds
        ]
    return [pooled([one[name] for one in rounds]) for name in names]


def _sweep_rounds(
    config: BenchConfig, prepared: _Prepared, progress: ProgressSink
) -> list[SweepResult]:
    """Each target's sweep ``config.rounds`` times, the targets in rotated order per round (as
    ``_run_rounds``), every sweep in the order it ran; the capacities' ratios within each round
    go to ``prepared.sweep_ratios``."""
    shape = replace(config.shape, mode="open", rate=config.sweep.start_rate)
    sweeps: list[SweepResult] = []
    for index in range(config.rounds):
        for target in rotated(prepared.targets, index):
            preflight = prepared.preflights[target.name]
            round_of = (index + 1, config.rounds)
            sweeps.append(run_sweep(target, shape, preflight, config.sweep, progress, round_of))
    if config.rounds > 1:
        prepared.sweep_ratios = capacity_ratios(sweeps)
    return sweeps


def _without_histogram(run: RunResult) -> dict[str, Any]:
    return {k: v for k, v in run.to_dict().items() if k != "histogram"}


def run_bench(config: BenchConfig, progress: ProgressSink) -> BenchOutcome:
    """Run the whole bench; raises ``BenchError`` (one line) when it cannot."""
    validate(config)
    started = dt.datetime.now(dt.UTC)
    machine = machine_info()  # before the runs: the load they share the machine with
    for mode in config.modes:
        if mode == "open":
            _check_rate(config, replace(config.shape, mode="open"))
    # Their ScoreLeads runs are open-loop at --rate.
    if {"summary", "tenant-flood", "shadow"} & set(config.targets):
        _check_rate(config, replace(config.shape, mode="open"))
    with tempfile.TemporaryDirectory(prefix="leadgw-bench-") as scratch, ExitStack() as stack:
        try:
            prepared = prepare(config, stack, progress, Path(scratch))
            runs, sweeps = execute(config, prepared, progress)
        except (TargetError, LoadError) as exc:
            raise BenchError(str(exc)) from None
        exit_codes = {name: server.stop() for name, server in prepared.servers.items()}
        exit_codes.update(prepared.exit_codes)
    report = _report(config, started, machine, prepared, runs, sweeps, exit_codes)
    plots = _plots(config, runs, sweeps, report)
    report["plots"] = [str(p) for p in plots]
    json_path, md_path = write_report(config.out, report, runs, sweeps)
    outcome = BenchOutcome(json_path, md_path, runs, sweeps, report)
    limited = [r for r in runs if r.mode == "open" and r.generator_limited]
    if limited:
        worst = limited[0]
        outcome.exit_code = 3
        outcome.message = (
            f"the generator could not send {worst.offered_rps:g}/s to {worst.target} "
            f"(sent {worst.achieved_rps:.0f}/s on time); lower --rate or raise --processes"
        )
    return outcome


def _check_rate(config: BenchConfig, shape: LoadShape) -> None:
    """The rate check needs only the shape; done before any server starts."""
    try:
        check_shape(shape, shape.processes, "load generator")
    except LoadError as exc:
        raise BenchError(str(exc)) from None


def _report(
    config: BenchConfig,
    started: dt.datetime,
    machine: dict[str, Any],
    prepared: _Prepared,
    runs: list[RunResult],
    sweeps: list[SweepResult],
    exit_codes: dict[str, int | None],
) -> dict[str, Any]:
    warnings = [f"{r.target} ({r.mode}): {w}" for r in runs for w in r.warnings]
    for sweep in sweeps:
        for step in sweep.steps:
            warnings += [
                f"{sweep.target} (sweep {step.offered_rps:g}/s): {w}" for w in step.warnings
            ]
    warnings += [f"{name} skipped: {why}" for name, why in prepared.skipped.items()]
    parameters = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}
    return {
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": config.command,
        "machine": {**machine, "load_average_1m_at_end": load_average_1m()},
        "versions": package_versions(prepared.extra_versions),
        "parameters": parameters,
        "targets": prepared.info,
        "skipped": prepared.skipped,
        "server_exit_codes": exit_codes,
        "warnings": warnings,
        "genai": prepared.genai,
        "rounds": {
            "count": config.rounds,
            "ratios": [ratio.to_dict() for ratio in prepared.round_ratios],
            "runs": prepared.rounds,
            "sweep_ratios": [ratio.to_dict() for ratio in prepared.sweep_ratios],
        },
    }


def _plots(
    config: BenchConfig, runs: list[RunResult], sweeps: list[SweepResult], report: dict[str, Any]
) -> list[Path]:
    if not config.plots:
        return []
    from benchmarks.plots import latency_plot, sweep_plot

    config.out.mkdir(parents=True, exist_ok=True)
    paths = []
    try:
        if runs:
            paths.append(latency_plot(runs, config.out / "latency.png"))
        if sweeps:
            paths.append(sweep_plot(sweeps, config.out / "sweep.png"))
    except ImportError as exc:  # matplotlib is the optional `plots` extra
        report["warnings"].append(f"no plots: {exc}")
    return paths
