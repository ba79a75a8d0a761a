"""What recording a batch-1 request's metrics costs, hot, in one process: the four histogram
records a request makes (its RPC's duration, its batch's size and run time, its queue wait)
through ``gateway.telemetry.Metrics``, with the local histograms (the default on an SDK meter
provider whose readers take histograms cumulatively) and with the SDK's own instruments.

Thread CPU time, the minimum over repetitions of the mean of N requests; a floor for what a
loaded worker pays (in a serving process the same work costs several times more: see
docs/perf/2026-11-29-metrics.md).

Run from the repository root::

    python scripts/metrics_cost.py [--n 20000] [--reps 7]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _per_request(metrics: object) -> Callable[[], None]:
    record_rpc = metrics.record_rpc  # type: ignore[attr-defined]
    record_batch = metrics.record_batch  # type: ignore[attr-defined]
    record_queue_wait = metrics.record_queue_wait  # type: ignore[attr-defined]

    def request() -> None:
        record_rpc("inference.GRPCInferenceService", "ModelInfer", 0, 0.00061)
        record_batch("lead_scorer", "1", 1, 0.000044)
        record_queue_wait("lead_scorer", "1", 0.0)

    return request


def _cost_us(request: Callable[[], None], n: int, reps: int) -> float:
    for _ in range(1000):
        request()
    best = float("inf")
    for _ in range(reps):
        started = time.thread_time()
        for _ in range(n):
            request()
        best = min(best, (time.thread_time() - started) / n * 1e6)
    return best


def main() -> int:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from gateway.telemetry import Metrics
    from gateway.telemetry.metrics import METER_NAME

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20000, help="requests per repetition")
    parser.add_argument("--reps", type=int, default=7, help="repetitions (the minimum is kept)")
    args = parser.parse_args()

    providers = []
    variants: dict[str, Metrics] = {}
    for name in ("local histograms", "the SDK's histograms"):
        provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
        providers.append(provider)
        if name == "local histograms":
            variants[name] = Metrics.from_provider(provider)
        else:
            variants[name] = Metrics(provider.get_meter(METER_NAME))
    variants["no-op (no reader)"] = Metrics.noop()
    print(f"metrics of one batch-1 request (4 histogram records), hot, {args.n} x {args.reps}:")
    for name, metrics in variants.items():
        print(f"  {name:22s} {_cost_us(_per_request(metrics), args.n, args.reps):6.2f} µs")
    for provider in providers:
        provider.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
