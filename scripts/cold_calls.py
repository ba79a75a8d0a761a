"""A small stage of a batch-1 call, timed in a live gateway one way and the other, blocks of
calls alternating (A B B A ...), so that both ways run with the caches as a server leaves them.

In a loop benchmark a stage runs with its code and data in the CPU's caches; in a server every
call's gRPC, protobuf, asyncio and gateway code has evicted them by the time the stage runs
again, and numpy's and ONNX Runtime's dispatch costs several times what it costs in a loop (the
lead model's batch-1 run: ~30 µs in a loop, ~75-110 µs in a live gateway). So these are timed in
place: a gateway and a grpc.aio client in one process on uvloop, one call at a time, the stage's
own thread CPU time read around it.

``finite``: ModelInfer's non-finite check of its input, numpy's ``isfinite().all()`` (A)
against the plain-Python sum the codec uses up to 256 values (B).
(``docs/perf/2026-11-29-cold-calls.patch`` adds ``scripts/cold_experiments/session_inplace.py``,
which times the model's run through ONNX Runtime's plain run against a per-thread I/O binding
the same way: ~12 µs saved a run in a loop that evicts the caches, nothing in a live gateway.)

``--score-stages`` times, the same way, where a batch-1 ScoreLeads call's servicer spends its
thread CPU: reading the lead from protobuf, encoding it, the batcher with the model's run, the
scores and the answer's protobuf (each stage's own time, the stages nested in it included).

Run from the repository root::

    python scripts/cold_calls.py [--blocks 40] [--calls 250]
    python scripts/cold_calls.py --score-stages [--calls 3000]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

INFER = "/inference.GRPCInferenceService/ModelInfer"
SCORE = "/leadgw.v1.LeadService/ScoreLeads"


def _numpy_finite(features: np.ndarray) -> bool:
    return bool(np.isfinite(features).all())


def _python_finite(features: np.ndarray) -> bool:
    return math.isfinite(sum(features.ravel().tolist()))


def _requests() -> dict[str, bytes]:
    from benchmarks.leads import (
        as_matrix,
        load_schema,
        model_infer_request,
        random_rows,
        score_leads_request,
    )
    from gateway.settings import BUNDLED_MODELS

    schema = load_schema(BUNDLED_MODELS, "lead_scorer")
    rows = random_rows(schema, 1, random.Random(1))
    return {
        INFER: model_infer_request(as_matrix(schema, rows), "lead_scorer").SerializeToString(),
        SCORE: score_leads_request(schema, rows, "lead_scorer").SerializeToString(),
    }


async def _score_stages(calls: int) -> dict[str, float]:
    """µs of thread CPU per call in each stage of a batch-1 ScoreLeads."""
    import grpc

    import gateway.lead_codec as lead_codec
    import gateway.lead_servicer as lead_servicer
    import runtimes.batcher as batcher
    import runtimes.scoring as scoring
    from gateway.server import start
    from gateway.settings import BUNDLED_MODELS, Settings
    from runtimes.schema import FeatureSchema
    from runtimes.session import OnnxSession

    totals: dict[str, int] = {}

    def timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            started = time.thread_time_ns()
            try:
                return function(*args, **kwargs)
            finally:
                totals[name] = totals.get(name, 0) + time.thread_time_ns() - started

        return run

    def timed_async(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        async def run(*args: Any, **kwargs: Any) -> Any:
            started = time.thread_time_ns()
            try:
                return await function(*args, **kwargs)
            finally:  # one call at a time: the loop runs nothing else of note meanwhile
                totals[name] = totals.get(name, 0) + time.thread_time_ns() - started

        return run

    # Patched where they are looked up: module attributes, a class's methods.
    servicer = lead_servicer.LeadServicer
    servicer.ScoreLeads = timed_async("servicer, whole", servicer.ScoreLeads)  # type: ignore[method-assign]
    lead_codec.leads_from_pb = timed("  lead from protobuf", lead_codec.leads_from_pb)
    FeatureSchema.encode_rows = timed("  encoding it", FeatureSchema.encode_rows)  # type: ignore[method-assign]
    # An idle batcher's run (``run_now``; its batchers hold the session's bound ``run``, so the
    # session is patched before the gateway starts).
    batcher.DynamicBatcher.run_now = timed(  # type: ignore[method-assign]
        "  batcher with the run", batcher.DynamicBatcher.run_now
    )
    OnnxSession.run = timed("    the model's run", OnnxSession.run)  # type: ignore[method-assign]
    scoring.build_scores = timed("  the scores", scoring.build_scores)
    lead_codec.scores_to_pb = timed("  answer's protobuf", lead_codec.scores_to_pb)
    request = _requests()[SCORE]
    with tempfile.TemporaryDirectory(prefix="leadgw-cold-calls-") as data:
        settings = Settings(
            port=0, host="127.0.0.1", model_repository=BUNDLED_MODELS, data_dir=Path(data)
        )
        gateway = await start(settings)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
            call = channel.unary_unary(SCORE)
            for _ in range(300):
                await call(request)
            totals.clear()
            for _ in range(calls):
                await call(request)
        await gateway.stop()
    return {name: ns / calls / 1e3 for name, ns in totals.items()}


async def _measure(blocks: int, calls: int) -> dict[str, dict[str, list[float]]]:
    import grpc

    from gateway import oip_codec
    from gateway.server import start
    from gateway.settings import BUNDLED_MODELS, Settings

    spent = {"ns": 0, "n": 0}

    def timed(function: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            started = time.thread_time_ns()
            try:
                return function(*args, **kwargs)
            finally:
                spent["ns"] += time.thread_time_ns() - started
                spent["n"] += 1

        return run

    chosen: dict[str, Callable[[np.ndarray], bool]] = {"finite": _python_finite}

    def check(features: np.ndarray, where: str, served: Any) -> None:
        if not chosen["finite"](features):
            raise AssertionError("the bench's features are finite")

    oip_codec._check_finite = timed(check)  # type: ignore[assignment]
    results: dict[str, dict[str, list[float]]] = {}
    requests = _requests()
    with tempfile.TemporaryDirectory(prefix="leadgw-cold-calls-") as data:
        settings = Settings(
            port=0, host="127.0.0.1", model_repository=BUNDLED_MODELS, data_dir=Path(data)
        )
        gateway = await start(settings)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
            for _ in range(300):
                await channel.unary_unary(INFER)(requests[INFER])

            async def block(method: str) -> float:
                call = channel.unary_unary(method)
                spent.update(ns=0, n=0)
                for _ in range(calls):
                    await call(requests[method])
                return spent["ns"] / spent["n"] / 1e3

            def set_finite(way: str) -> None:
                chosen["finite"] = _numpy_finite if way == "A" else _python_finite

            seen: dict[str, list[float]] = {"A": [], "B": []}
            for i in range(blocks):
                way = "AB"[(i + i // 2) % 2]  # A B B A A B ...
                set_finite(way)
                seen[way].append(await block(INFER))
            results["finite (ModelInfer)"] = seen
        await gateway.stop()
    return results


_STAGE_ORDER = (
    "servicer, whole",
    "  lead from protobuf",
    "  encoding it",
    "  batcher with the run",
    "    the model's run",
    "  the scores",
    "  answer's protobuf",
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=40, help="blocks of calls per stage")
    parser.add_argument("--calls", type=int, default=250, help="calls per block")
    parser.add_argument(
        "--score-stages", action="store_true", help="time a batch-1 ScoreLeads's stages instead"
    )
    args = parser.parse_args()
    import uvloop

    if args.score_stages:
        stages = uvloop.run(_score_stages(args.calls))
        print(f"µs of thread CPU per batch-1 ScoreLeads call, {args.calls} calls:")
        for name in _STAGE_ORDER:
            print(f"  {name:30s} {stages.get(name, 0.0):7.1f}")
        return 0

    results = uvloop.run(_measure(args.blocks, args.calls))
    print(f"µs of thread CPU per call in the stage, median over {args.blocks // 2} blocks of "
          f"{args.calls} calls each way (lowest-highest block):")  # fmt: skip
    for name, seen in results.items():
        a, b = statistics.median(seen["A"]), statistics.median(seen["B"])
        print(f"  {name:22s} A {a:6.1f} ({min(seen['A']):.1f}-{max(seen['A']):.1f})  "
              f"B {b:6.1f} ({min(seen['B']):.1f}-{max(seen['B']):.1f})  "
              f"B-A {b - a:+6.1f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
