"""Where a batch-1 ModelInfer call's CPU goes beyond gRPC's own: the gateway against the
transport floor, in one process on uvloop, with the gateway's parts taken away one at a time.

Each variant runs in a fresh process: a server (the floor's canned answer, or the real gateway
started as ``leadgw serve`` starts it) and a grpc.aio client in the same event loop, calling
ModelInfer one at a time. The process's CPU per call is the client's and the server's together;
the client is the same in every variant, so differences between variants are the server's.

- ``floor``: a bare grpc.aio server answering with the lead model's response bytes;
- ``gateway``: the real gateway;
- ``canned``: the gateway, its ModelInfer servicer answering with one prebuilt response
  (everything around the servicer still runs: the handler wrappers, request parsing, the
  response's serialisation);
- ``bare``: the gateway without its handler wrappers (admission, auth, rate limits, tracing,
  error mapping), its servicer unchanged;
- ``parts``: the gateway, with its servicer's stages timed in place (decoding, the served
  model with its batcher, the ONNX run, encoding).

``--rows N`` sends N rows per call instead of one; ``--paths`` also prints, for each repeat of
the gateway variant, how many calls ran their model on the event loop and how many through the
batcher's executor, and the run time the batcher had learned for N rows at its end.

Run from the repository root::

    python scripts/infer_cost_parts.py [--calls 2000] [--repeats 5] [--rounds 2] [--rows 1]
        [--variants floor,gateway,...] [--paths]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIANTS = ("floor", "gateway", "canned", "bare", "parts")
_PARTS_ORDER = (
    "servicer, whole",
    "decode",
    "served model + batcher",
    "  of which the ONNX run",
    "encode",
)
METHOD = "/inference.GRPCInferenceService/ModelInfer"


def _request(rows_per_call: int) -> bytes:
    from benchmarks.leads import as_matrix, load_schema, model_infer_request, random_rows
    from gateway.settings import BUNDLED_MODELS

    schema = load_schema(BUNDLED_MODELS, "lead_scorer")
    rows = random_rows(schema, rows_per_call, random.Random(1))
    return model_infer_request(as_matrix(schema, rows), "lead_scorer").SerializeToString()


def _without_wrappers() -> None:
    import gateway.server as server

    def unchanged(_path: str, handler: Any) -> Any:
        return handler

    for name in ("request_rate_limiting", "lead_rate_limiting", "authentication"):
        setattr(server, name, lambda *_a, **_k: unchanged)
    server.server_handler_wrapper = lambda **_k: unchanged  # type: ignore[assignment]
    server.error_mapping = unchanged  # type: ignore[assignment]
    server.CallGate.wrap = lambda _self, _path, handler: handler  # type: ignore[method-assign,assignment]


def _canned_answer() -> None:
    from gateway.oip_servicer import InferenceServicer

    real = InferenceServicer.ModelInfer
    answer: list[Any] = []

    async def canned(self: Any, request: Any, context: Any) -> Any:
        if not answer:
            answer.append(await real(self, request, context))
        return answer[0]

    InferenceServicer.ModelInfer = canned  # type: ignore[method-assign]


def _counted_paths() -> dict[str, int]:
    """Counts where the batcher runs each call's model: on the loop (alone, or a batch run
    inline) or through its executor."""
    import runtimes.batcher as batcher

    counts = {"loop": 0, "executor": 0}
    run_now = batcher.DynamicBatcher.run_now
    run_alone = batcher.DynamicBatcher._run_alone
    runs_inline = batcher.DynamicBatcher._runs_inline

    def now(self: Any, *args: Any, **kwargs: Any) -> Any:
        outputs = run_now(self, *args, **kwargs)
        if outputs is not None:  # None: the call submits, and is counted there
            counts["loop"] += 1
        return outputs

    def alone(self: Any, *args: Any, **kwargs: Any) -> Any:
        counts["loop"] += 1
        return run_alone(self, *args, **kwargs)

    def inline(self: Any, batch: Any) -> bool:
        decided = runs_inline(self, batch)
        counts["loop" if decided else "executor"] += 1
        return decided

    batcher.DynamicBatcher.run_now = now  # type: ignore[method-assign]
    batcher.DynamicBatcher._run_alone = alone  # type: ignore[method-assign]
    batcher.DynamicBatcher._runs_inline = inline  # type: ignore[method-assign]
    return counts


def _timed_parts() -> dict[str, int]:
    """Wraps the servicer's stages with clocks; returns the running totals (ns)."""
    import gateway.oip_servicer as servicer
    from gateway import oip_codec
    from runtimes.served_model import ServedModel
    from runtimes.session import OnnxSession

    totals: dict[str, int] = {}

    def clocked(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter_ns()
            try:
                return function(*args, **kwargs)
            finally:
                totals[name] = totals.get(name, 0) + time.perf_counter_ns() - started

        return run

    def clocked_async(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        async def run(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter_ns()
            try:
                return await function(*args, **kwargs)
            finally:
                totals[name] = totals.get(name, 0) + time.perf_counter_ns() - started

        return run

    servicer.InferenceServicer.ModelInfer = clocked_async(  # type: ignore[method-assign]
        "servicer, whole", servicer.InferenceServicer.ModelInfer
    )
    oip_codec.decode_features = clocked("decode", oip_codec.decode_features)
    oip_codec.encode_response = clocked("encode", oip_codec.encode_response)
    ServedModel.infer = clocked_async("served model + batcher", ServedModel.infer)  # type: ignore[method-assign]
    # Before the gateway starts: its batchers hold the session's bound ``run``.
    OnnxSession.run = clocked("  of which the ONNX run", OnnxSession.run)  # type: ignore[method-assign]
    return totals


async def _measure(
    variant: str, calls: int, repeats: int, rows_per_call: int, paths: dict[str, int] | None
) -> dict[str, Any]:
    import grpc

    from benchmarks.floor_server import canned_response
    from gateway.server import start
    from gateway.settings import BUNDLED_MODELS, Settings

    request = _request(rows_per_call)
    closers: list[Callable[[], Any]] = []
    with tempfile.TemporaryDirectory(prefix="leadgw-infer-parts-") as data:
        if variant == "floor":
            answer = canned_response(rows_per_call, 16, "lead_scorer")

            async def floor(_request: bytes, _context: Any) -> bytes:
                return answer

            server = grpc.aio.server()
            handler = grpc.unary_unary_rpc_method_handler(floor)
            service = grpc.method_handlers_generic_handler(
                "inference.GRPCInferenceService", {"ModelInfer": handler}
            )
            server.add_generic_rpc_handlers((service,))
            port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            closers.append(lambda: server.stop(None))
        else:
            settings = Settings(
                port=0, host="127.0.0.1", model_repository=BUNDLED_MODELS, data_dir=Path(data)
            )
            gateway = await start(settings)
            port = gateway.port
            closers.append(gateway.stop)
        per_call: list[tuple[float, float]] = []
        repeats_seen: list[dict[str, Any]] = []
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary(METHOD)
            for _ in range(300):
                await call(request)
            for _ in range(repeats):
                if paths is not None:
                    paths.update(loop=0, executor=0)
                wall, cpu = time.perf_counter(), time.process_time()
                for _ in range(calls):
                    await call(request)
                cpu_us = (time.process_time() - cpu) / calls * 1e6
                wall_us = (time.perf_counter() - wall) / calls * 1e6
                per_call.append((cpu_us, wall_us))
                if paths is not None:
                    served = gateway.repository.get("lead_scorer", None)
                    learned = served._batcher.run_time.estimate(rows_per_call) * 1e6
                    repeats_seen.append({**paths, "learned_us": learned, "wall_us": wall_us})
        for close in closers:
            await close()
    per_call.sort()
    middle = per_call[len(per_call) // 2]
    return {"cpu_us": middle[0], "wall_us": middle[1], "repeats": repeats_seen}


def _child(variant: str, calls: int, repeats: int, rows_per_call: int, paths: bool) -> None:
    import uvloop

    if variant == "canned":
        _canned_answer()
    if variant == "bare":
        _without_wrappers()
    totals = _timed_parts() if variant == "parts" else {}
    counts = _counted_paths() if paths and variant == "gateway" else None
    result = uvloop.run(_measure(variant, calls, repeats, rows_per_call, counts))
    measured = calls * repeats + 300
    result["parts_us"] = {name: ns / measured / 1e3 for name, ns in totals.items()}
    print(json.dumps(result))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per repeat")
    parser.add_argument("--repeats", type=int, default=5, help="repeats per variant (median)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of every variant")
    parser.add_argument("--rows", type=int, default=1, help="rows per ModelInfer call")
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"which of {', '.join(VARIANTS)}"
    )
    parser.add_argument("--paths", action="store_true", help="where the gateway ran each model")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.calls, args.repeats, args.rows, args.paths)
        return 0
    variants = tuple(v for v in args.variants.split(",") if v)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        parser.error(f"--variants: unknown {unknown}; choose from {', '.join(VARIANTS)}")
    results: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for r in range(args.rounds):
        order = variants if r % 2 == 0 else variants[::-1]
        for variant in order:
            command = [sys.executable, __file__, "--child", variant, "--calls", str(args.calls),
                       "--repeats", str(args.repeats), "--rows", str(args.rows),
                       *(["--paths"] if args.paths else [])]  # fmt: skip
            out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
            if out.returncode != 0:
                print(out.stderr, file=sys.stderr)
                return 1
            result = json.loads(out.stdout.strip().splitlines()[-1])
            results[variant].append(result)
            print(f"round {r + 1} {variant:8s} CPU {result['cpu_us']:7.1f} µs/call  "
                  f"wall {result['wall_us']:7.1f} µs/call", flush=True)  # fmt: skip
            for i, seen in enumerate(result["repeats"], 1):
                print(f"  repeat {i}: wall {seen['wall_us']:7.1f} µs/call; model on the loop "
                      f"{seen['loop']}, through the executor {seen['executor']}; learned run "
                      f"time for {args.rows} rows {seen['learned_us']:.0f} µs")  # fmt: skip
    print(f"median over rounds, {args.rows} row(s) per call (client and server CPU per call; "
          "the client is the same in all):")  # fmt: skip
    floor = statistics.median(x["cpu_us"] for x in results["floor"]) if "floor" in results else None
    for variant in variants:
        cpu = statistics.median(x["cpu_us"] for x in results[variant])
        against = "" if floor is None else f"  {cpu - floor:+7.1f} µs against the floor"
        print(f"  {variant:8s} {cpu:7.1f} µs/call{against}")
    if "parts" in results:
        print("the servicer's stages in place (variant parts), µs per call, median over rounds:")
        for name in _PARTS_ORDER:
            value = statistics.median(x["parts_us"][name] for x in results["parts"])
            print(f"  {name:28s} {value:7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
