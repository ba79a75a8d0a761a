"""The ``shadow`` target: what shadow scoring costs the live version's ScoreLeads p99.

A copy of the model repository (in a scratch folder) gets a candidate version next to the live
one: trained with another seed (``leadgw train --version N --seed 7``) or, with ``copy``, the
live version's folder copied. Its ``config.toml`` gets a ``[routing]`` table naming the live
version, and one gateway serves it in ``explicit`` model-control mode. Between runs the bench
turns the shadow on and off with the control RPC (``RepositoryModelLoad`` with the parameters
``version`` and ``shadow``, as ``leadgw models shadow`` sends it), so both kinds run on the same
gateway process. ScoreLeads goes open-loop at ``rate`` (or, with ``half_capacity``, at half the
closed-loop throughput measured first with the shadow off), off and on in interleaved rounds;
p99s are of each kind's latencies pooled over the rounds, and the target is a ratio of at most
1.10. With several ``shadow_rates`` (the share of leads the shadow compares, the control RPC's
``shadow_rate``; 0 is a control: the shadow switched on, comparing no lead), each round runs
off and on at each rate, the order turned by one kind each round. The gateway's metrics
(``leadgw_shadow_leads_total``, ``leadgw_shadow_dropped_total``) show how many leads the shadow
compared in each run, so a run that did not shadow shows.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import grpc

from benchmarks.notes_fill import scratch_dir
from benchmarks.progress import ProgressSink
from benchmarks.results import RunResult
from benchmarks.runner import run_load
from benchmarks.servers import ServerProcess, ServerStartError, free_port, start_listening_server
from benchmarks.summary_suite import pooled_p99_ms, round_ratios
from benchmarks.targets import GrpcUnaryTarget, TargetError
from leadgw_client.pb.inference import grpc_service_pb2 as oip
from leadgw_client.pb.inference import grpc_service_pb2_grpc as oip_grpc
from leadgw_client.pb.leadgw.v1 import lead_service_pb2

if TYPE_CHECKING:
    from benchmarks.suite import BenchConfig

P99_TARGET_RATIO = 1.10  # issue 16: shadow scoring adds at most 10% to the live p99
CANDIDATE_SEED = 7
CONTROL_TIMEOUT_S = 60.0
TRAIN_TIMEOUT_S = 300.0
SHADOW_LEADS = "leadgw_shadow_leads_total"
SHADOW_DROPPED = "leadgw_shadow_dropped_total"
LEAD_ID_COPIES = 32  # each request of the pool sent under this many sets of lead ids
SETTLE_S = 0.3  # after a run, before reading its counts: the shadow drains every 50 ms

Source = Literal["train", "copy"]


@dataclass(frozen=True, slots=True)
class ShadowPlan:
    rate: float = 200.0
    half_capacity: bool = False  # measure the closed-loop capacity first and run at half of it
    rounds: int = 3
    source: Source = "train"
    shadow_rates: tuple[float, ...] = (1.0,)  # shares of leads compared; each runs every round


@dataclass(slots=True)
class ShadowRun:
    run: str  # the label in the runs list
    shadow: bool
    shadow_leads: int  # leads the shadow scored and compared during this run (metrics delta)
    shadow_dropped: int
    shadow_rate: float | None = None  # with the shadow on: the share of leads it compared


@dataclass(slots=True)
class ShadowRateResult:
    """The shadow on at one sampling rate, against the same rounds' shadow-off runs."""

    shadow_rate: float
    p99_on_ms: float  # pooled over the rounds
    p99_ratio: float | None
    met: bool | None
    round_ratios: list[float]


@dataclass(slots=True)
class ShadowResult:
    model: str
    live_version: str
    candidate_version: str
    candidate_source: str  # train (seed 7) | copy
    rate: float  # requests/s of every run
    capacity_rps: float | None  # closed-loop ok req/s with the shadow off, when measured
    rounds: int
    runs: list[ShadowRun]
    p99_off_ms: float  # pooled over the rounds
    p99_on_ms: float
    p99_ratio: float | None
    met: bool | None
    round_ratios: list[float]
    shadow_rate: float = 1.0  # of the figures above: the first of ``by_rate``
    by_rate: list[ShadowRateResult] = field(default_factory=list)
    target_ratio: float = P99_TARGET_RATIO
    exit_codes: dict[str, int | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _versions(model_dir: Path) -> list[int]:
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def prepare_repository(
    source_repository: Path, model: str, repository: Path, source: Source
) -> tuple[str, str]:
    """Copies ``model`` into ``repository`` with a candidate version beside the live one, and
    pins the live one in ``[routing]``; returns (live, candidate) version names."""
    src = source_repository / model
    if not (src / "config.toml").is_file():
        raise TargetError(f"shadow: no model {model!r} with a config.toml in {source_repository}")
    model_dir = repository / model
    shutil.copytree(src, model_dir)
    versions = _versions(model_dir)
    if not versions:
        raise TargetError(f"shadow: model {model!r} has no version folder in {source_repository}")
    live, candidate = str(versions[-1]), str(versions[-1] + 1)
    if source == "copy":
        shutil.copytree(model_dir / live, model_dir / candidate)
    else:
        command = [
            sys.executable, "-m", "gateway", "train", "--repository", str(repository),
            "--model", model, "--version", candidate, "--seed", str(CANDIDATE_SEED), "--quiet",
        ]  # fmt: skip
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=TRAIN_TIMEOUT_S, check=False
        )
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["(no output)"])[-1][:300]
            raise TargetError(f"shadow: training version {candidate} failed: {last}")
    config = model_dir / "config.toml"
    # Without it the highest loaded version (the candidate) would be live.
    config.write_text(config.read_text().rstrip("\n") + f'\n\n[routing]\nlive = "{live}"\n')
    return live, candidate


def gateway_env(data_dir: Path, metrics_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LEADGW_"))}
    env.update(
        LEADGW_DATA_DIR=str(data_dir),
        LEADGW_LOAD_DEMO_CORPUS="false",
        LEADGW_MODEL_CONTROL_MODE="explicit",
        LEADGW_METRICS_PORT=str(metrics_port),
        LEADGW_LOG_LEVEL="WARNING",
        OTEL_TRACES_EXPORTER="none",
        OTEL_METRICS_EXPORTER="none",
    )
    return env


async def set_shadow(address: str, model: str, version: str, on: bool, rate: float = 1.0) -> None:
    """The control RPC ``leadgw models shadow [--rate]`` sends; returns once every worker
    applied it."""
    request = oip.RepositoryModelLoadRequest(model_name=model)
    request.parameters["version"].string_param = version
    request.parameters["shadow"].bool_param = on
    if on:
        request.parameters["shadow_rate"].string_param = repr(rate)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        try:
            await stub.RepositoryModelLoad(request, timeout=CONTROL_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            raise TargetError(
                f"shadow: turning the shadow {'on' if on else 'off'} failed: "
                f"{exc.code().name}: {exc.details()}"
            ) from None


def metric_sum(text: str, name: str) -> float:
    """The sum of every series of ``name`` in a Prometheus text exposition."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _shadow_counts(metrics_port: int) -> tuple[int, int]:
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return int(metric_sum(text, SHADOW_LEADS)), int(metric_sum(text, SHADOW_DROPPED))


def distinct_leads(payloads: tuple[bytes, ...], copies: int) -> tuple[bytes, ...]:
    """The pool's ScoreLeads requests, each under ``copies`` sets of lead ids: a shadow rate
    samples leads by their ids, so a share of 8 ids would be a coarse draw (0 or 1 of 8 at 0.1)."""
    out = []
    for copy in range(copies):
        for payload in payloads:
            request = lead_service_pb2.ScoreLeadsRequest.FromString(payload)
            for lead in request.leads:
                lead.lead_id = f"{lead.lead_id}-{copy}"
            if request.HasField("columns"):  # touching columns would add the field
                ids = request.columns.lead_ids
                ids[:] = [f"{lead_id}-{copy}" for lead_id in ids]
            out.append(request.SerializeToString())
    return tuple(out)


def _start(
    config: BenchConfig, stack: ExitStack, repository: Path, data_dir: Path, metrics_port: int
) -> ServerProcess:
    command = [*config.leadgw_command, "--port", "0", "--model-repository", str(repository)]
    try:
        return stack.enter_context(
            start_listening_server(
                "leadgw-shadow",
                command,
                config.server_ready_timeout_s,
                gateway_env(data_dir, metrics_port),
            )
        )
    except ServerStartError as exc:
        raise TargetError(f"shadow: {exc}") from None


def _state(share: float | None) -> str:
    """ "off", "on" (every lead compared) or "on 0.1" (a share of leads)."""
    if share is None:
        return "off"
    return "on" if share == 1.0 else f"on {share:g}"


def _rate_result(
    share: float, off: list[RunResult], on: list[RunResult], ok: bool
) -> ShadowRateResult:
    p99_off, p99_on = pooled_p99_ms(off), pooled_p99_ms(on)
    ratio = p99_on / p99_off if ok and p99_off > 0 else None
    return ShadowRateResult(
        shadow_rate=share,
        p99_on_ms=p99_on,
        p99_ratio=ratio,
        met=None if ratio is None else ratio <= P99_TARGET_RATIO,
        round_ratios=round_ratios(off, on),
    )


def run_shadow(
    config: BenchConfig, plan: ShadowPlan, score: GrpcUnaryTarget, progress: ProgressSink
) -> tuple[list[RunResult], ShadowResult]:
    """Rounds of ScoreLeads with the shadow off and on, against a gateway of its own."""
    with scratch_dir("leadgw-bench-shadow-") as tmp, ExitStack() as stack:
        repository = Path(tmp) / "models"
        repository.mkdir()
        progress.note(
            f"shadow: preparing a candidate version of {config.model} "
            f"({'training with seed 7' if plan.source == 'train' else 'copying the live one'})"
        )
        live, candidate = prepare_repository(
            config.model_repository, config.model, repository, plan.source
        )
        metrics_port = free_port()
        gateway = _start(config, stack, repository, Path(tmp) / "data", metrics_port)
        target = replace(
            score,
            address=gateway.address,
            server_pid=gateway.pid,
            payloads=distinct_leads(score.payloads, LEAD_ID_COPIES),
        )
        preflight = asyncio.run(target.preflight(config.shape.connect_timeout_s))
        runs: list[RunResult] = []
        capacity = None
        rate = plan.rate
        if plan.half_capacity:
            label = f"scoreleads capacity, shadow off, c={config.shape.concurrency}"
            probe = run_load(
                replace(target, name=label), replace(config.shape, mode="closed"), preflight,
                progress, label,
            )  # fmt: skip
            runs.append(probe)
            capacity = probe.ok_rps
            if capacity <= 0:
                raise TargetError("shadow: the capacity run scored nothing")
            rate = round(capacity / 2, 1)
        shape = replace(config.shape, mode="open", rate=rate)
        measured: list[tuple[float | None, RunResult]] = []  # (shadow rate or None: off, run)
        details: list[ShadowRun] = []
        for round_no in range(1, plan.rounds + 1):
            suffix = f" #{round_no}" if plan.rounds > 1 else ""
            kinds: list[float | None] = [None, *plan.shadow_rates]
            # The order turns by one each round, so no kind always runs first after a switch.
            shift = (round_no - 1) % len(kinds)
            for share in kinds[shift:] + kinds[:shift]:
                on = share is not None
                asyncio.run(
                    set_shadow(
                        gateway.address,
                        config.model,
                        candidate,
                        on,
                        1.0 if share is None else share,
                    )
                )
                label = f"scoreleads shadow {_state(share)}{suffix}"
                leads_before, dropped_before = _shadow_counts(metrics_port)
                run = run_load(replace(target, name=label), shape, preflight, progress, label)
                time.sleep(SETTLE_S)
                leads_after, dropped_after = _shadow_counts(metrics_port)
                runs.append(run)
                measured.append((share, run))
                details.append(
                    ShadowRun(
                        label,
                        on,
                        leads_after - leads_before,
                        dropped_after - dropped_before,
                        share,
                    )
                )
        exit_codes = {"leadgw-shadow": gateway.stop()}
    off = [r for share, r in measured if share is None]
    ok = all(r.ok for _, r in measured)
    by_rate = [
        _rate_result(share, off, [r for s, r in measured if s == share], ok)
        for share in plan.shadow_rates
    ]
    first = by_rate[0]
    result = ShadowResult(
        model=config.model,
        live_version=live,
        candidate_version=candidate,
        candidate_source=plan.source,
        rate=rate,
        capacity_rps=capacity,
        rounds=plan.rounds,
        runs=details,
        p99_off_ms=pooled_p99_ms(off),
        p99_on_ms=first.p99_on_ms,
        p99_ratio=first.p99_ratio,
        met=first.met,
        round_ratios=first.round_ratios,
        shadow_rate=first.shadow_rate,
        by_rate=by_rate,
        exit_codes=exit_codes,
    )
    return runs, result
