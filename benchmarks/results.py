"""The figures of one run (one target, one load shape), merged from every generator process, and
the warnings that say when the figures cannot be taken at face value."""

from __future__ import annotations

import base64
from dataclasses import asdict, dataclass, field
from typing import Any

from benchmarks.histograms import Percentiles, merge
from benchmarks.loadgen import LoadShape, WorkerOutcome
from benchmarks.targets import Preflight

# Past these the generator, not the server, may be what was measured.
CLIENT_CPU_SATURATION = 0.85  # of the cores its processes could use
SEND_LAG_LIMIT_MS = 10.0  # p90 of how late requests left against their intended send time
ACHIEVED_SHORTFALL = 0.95  # achieved below this share of offered


@dataclass(slots=True)
class CpuUse:
    """CPU seconds used inside the measured window, and as cores (seconds per second)."""

    seconds: float
    cores: float


@dataclass(slots=True)
class RunResult:
    target: str
    mode: str
    shape: dict[str, Any]
    rows_per_request: int
    processes: int
    offered_rps: float | None
    sent: int
    ok: int
    errors: dict[str, int]
    not_sent: int
    cap_waits: int
    achieved_rps: float
    ok_rps: float
    rows_per_s: float
    latency_ms: Percentiles
    send_lag_ms: Percentiles
    client_cpu: CpuUse
    server_cpu: CpuUse | None
    request_bytes: int
    response_bytes: int
    in_process: bool = False  # the generator is the server: its CPU is the work itself
    generator_limited: bool = False
    warnings: list[str] = field(default_factory=list)
    histogram: str = ""  # the merged latency HdrHistogram (µs), base64 of its encoded form

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def merge_outcomes(
    target: str,
    shape: LoadShape,
    rows_per_request: int,
    preflight: Preflight,
    outcomes: list[WorkerOutcome],
    server_cpu_s: float | None,
    machine_cores: int,
    in_process: bool = False,
) -> RunResult:
    """Add up the processes' counts and histograms and derive rates and warnings."""
    latency = merge([o.latency for o in outcomes])
    lag = merge([o.send_lag for o in outcomes])
    errors: dict[str, int] = {}
    for o in outcomes:
        for code, n in o.errors.items():
            errors[code] = errors.get(code, 0) + n
    ok = sum(o.ok for o in outcomes)
    sent = sum(o.sent for o in outcomes)
    client_s = sum(o.cpu_s for o in outcomes)
    window = shape.duration_s
    result = RunResult(
        target=target,
        mode=shape.mode,
        shape=asdict(shape),
        rows_per_request=rows_per_request,
        processes=len(outcomes),
        offered_rps=shape.rate if shape.mode == "open" else None,
        sent=sent,
        ok=ok,
        errors=dict(sorted(errors.items())),
        not_sent=sum(o.not_sent for o in outcomes),
        cap_waits=sum(o.cap_waits for o in outcomes),
        achieved_rps=sent / window,
        ok_rps=ok / window,
        rows_per_s=ok * rows_per_request / window,
        latency_ms=Percentiles.of(latency),
        send_lag_ms=Percentiles.of(lag),
        client_cpu=CpuUse(client_s, client_s / window),
        server_cpu=None if server_cpu_s is None else CpuUse(server_cpu_s, server_cpu_s / window),
        request_bytes=preflight.request_bytes,
        response_bytes=preflight.response_bytes,
        histogram=base64.b64encode(latency.encode()).decode("ascii"),
        in_process=in_process,
    )
    diagnose(result, machine_cores)
    return result


def _short_of_offered(result: RunResult) -> bool:
    """Fewer sent than offered, beyond what Poisson arrivals vary by (3 standard deviations)."""
    expected = (result.offered_rps or 0.0) * result.shape["duration_s"]
    slack = 3 * expected**0.5 if result.shape["arrival"] == "poisson" else 1.0
    return result.sent < min(ACHIEVED_SHORTFALL * expected, expected - slack)


def diagnose(result: RunResult, machine_cores: int) -> None:
    """Fill ``generator_limited`` and ``warnings``."""
    warn = result.warnings.append
    usable = min(result.processes, machine_cores)
    if result.mode == "open":
        lagging = result.send_lag_ms.p90 > SEND_LAG_LIMIT_MS or result.not_sent > 0
        result.generator_limited = lagging and result.cap_waits == 0
        if result.generator_limited:
            warn(
                f"the generator fell behind its schedule (send lag p90 "
                f"{result.send_lag_ms.p90:.1f} ms, {result.not_sent} not sent): the offered "
                f"{result.offered_rps:g}/s was not generated; raise --processes or lower --rate"
            )
        elif result.offered_rps and _short_of_offered(result):
            warn(f"achieved {result.achieved_rps:.0f}/s of the offered {result.offered_rps:g}/s")
        if result.cap_waits:
            warn(
                f"the in-flight cap ({result.shape['max_in_flight']} per process) was reached "
                f"{result.cap_waits} times: the server fell behind; those requests are still "
                "timed from their intended send time"
            )
    if not result.in_process and result.client_cpu.cores > CLIENT_CPU_SATURATION * usable:
        warn(
            f"the generator used {result.client_cpu.cores:.2f} of the {usable} cores its "
            "processes can use: it is near saturation, latencies may include client queuing"
        )
    if result.server_cpu is not None:
        both = result.client_cpu.cores + result.server_cpu.cores
        if both > CLIENT_CPU_SATURATION * machine_cores:
            warn(
                f"client and server together used {both:.2f} of {machine_cores} cores: "
                "they compete for CPU on this machine"
            )
    if result.error_count:
        codes = ", ".join(f"{code} {n}" for code, n in result.errors.items())
        warn(f"{result.error_count} of {result.sent} requests failed ({codes})")
    if result.ok == 0:
        warn("no request succeeded inside the measured window")
