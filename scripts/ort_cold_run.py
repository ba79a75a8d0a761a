"""What a batch-1 ONNX Runtime run costs hot, and after the work a served call does between runs.

In place, the gateway's batch-1 ModelInfer spends ~34 µs of thread CPU in ``OnnxSession.run``
(``scripts/infer_cost_parts.py --variants parts``, with a thread clock around the run), where a
loop of runs back to back takes ~5 µs. This script finds which work between two runs makes
the second one slow. Each case runs the bundled lead model on one row through the gateway's own
``OnnxSession``, N times, doing its "between" work before each run, and prints the median wall
time of the run alone:

- ``back to back``: nothing between runs;
- ``python``: some pure-Python work (json and re);
- ``thread ping-pong``: a round trip to another thread (two context switches);
- ``data 2 MB`` / ``data 32 MB``: a numpy sum over that much memory (the L2 / the L3);
- ``unix socket round trip`` / ``tcp loopback round trip``: 100 bytes to an echoing thread and
  back over a socket pair / a loopback TCP connection (the kernel's socket path and two wake-ups,
  without gRPC);
- ``sleep 200 µs``: the thread blocks and the CPU idles;
- ``grpc call``: one bare grpc.aio unary call over loopback to a server in the same process
  (the transport floor's work for one call);

and, for the ``grpc call`` case, the run through each way onnxruntime offers (its session's
``run`` with one or all outputs, ``run_with_ort_values``, session options) to see if any avoids
the cost, and five numpy calls of the model's size as a control that is not onnxruntime; then,
as controls for the call, the run inside the same event loop after one of its turns and after
200 µs asleep on it, with no gRPC call.

Run from the repository root (``--pin 0`` pins the process to CPU 0, to tell what migrating
between the cores adds)::

    python scripts/ort_cold_run.py [--runs 3000] [--pin CPU]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import re
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runtimes.model_config import OrtSettings  # noqa: E402
from runtimes.session import OnnxSession  # noqa: E402

MODEL = ROOT / "runtimes" / "bundled_models" / "lead_scorer" / "1" / "model.onnx"
OUTPUTS = ["probability", "logit", "contributions"]


def session(**options: object) -> ort.InferenceSession:
    """A session set up as ``runtimes.session.OnnxSession`` sets it up, with overrides."""
    settings = ort.SessionOptions()
    settings.intra_op_num_threads = 1
    settings.inter_op_num_threads = 1
    settings.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    settings.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    settings.add_session_config_entry("session.intra_op.allow_spinning", "0")
    settings.add_session_config_entry("session.inter_op.allow_spinning", "0")
    for name, value in options.items():
        setattr(settings, name, value)
    return ort.InferenceSession(
        str(MODEL), sess_options=settings, providers=["CPUExecutionProvider"]
    )


def median_us(samples: list[int]) -> float:
    return statistics.median(samples) / 1000


def timed_runs(run: Callable[[], object], between: Callable[[], object], runs: int) -> float:
    samples = []
    for _ in range(runs):
        between()
        started = time.perf_counter_ns()
        run()
        samples.append(time.perf_counter_ns() - started)
    return median_us(samples)


async def grpc_cases(
    runs: dict[str, Callable[[], object]], count: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Each run after one unary call to a bare grpc.aio server in this process, interleaved;
    then the gateway's run after the event loop's own turns without gRPC (a turn, 200 µs
    asleep), as controls."""

    async def answer(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return b"x" * 100

    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(answer)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("t.T", {"M": handler})])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary("/t.T/M")
            for _ in range(300):
                await call(b"y")
            samples: dict[str, list[int]] = {name: [] for name in runs}
            for _ in range(3):  # rounds, so drift hits every way alike
                for name, run in runs.items():
                    for _ in range(count // 3):
                        await call(b"y")
                        started = time.perf_counter_ns()
                        run()
                        samples[name].append(time.perf_counter_ns() - started)
            turns: dict[str, list[int]] = {"a turn": [], "200 µs asleep": []}
            for _ in range(count):
                for name, pause in (("a turn", 0.0), ("200 µs asleep", 200e-6)):
                    await asyncio.sleep(pause)
                    started = time.perf_counter_ns()
                    runs["run"]()
                    turns[name].append(time.perf_counter_ns() - started)
    finally:
        await server.stop(None)
    return (
        {name: median_us(values) for name, values in samples.items()},
        {name: median_us(values) for name, values in turns.items()},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3000, help="runs per case (default 3000)")
    parser.add_argument("--pin", type=int, help="pin the process to this CPU")
    args = parser.parse_args()
    if args.pin is not None:
        os.sched_setaffinity(0, {args.pin})

    row = np.zeros((1, 16), dtype=np.float32)
    gateways = OnnxSession(MODEL, OrtSettings(), tuple(OUTPUTS))  # as the gateway runs it
    base = session()  # the variants below change one thing each of this one
    run = base._sess.run

    def lead_run() -> object:
        return gateways.run(row)

    text = json.dumps([{"a": i, "b": str(i)} for i in range(300)])
    to_thread: queue.SimpleQueue[int] = queue.SimpleQueue()
    back: queue.SimpleQueue[int] = queue.SimpleQueue()

    def echo() -> None:
        while True:
            back.put(to_thread.get())

    threading.Thread(target=echo, daemon=True).start()
    l2 = np.ones(2 * 2**20 // 8)
    l3 = np.ones(32 * 2**20 // 8)

    def python_work() -> None:
        json.loads(text)
        for _ in range(50):
            re.sub("a", "b", "abc" * 20)

    def ping_pong() -> None:
        to_thread.put(1)
        back.get()

    def echo_over(sock: socket.socket) -> None:
        while message := sock.recv(4096):
            sock.sendall(message)

    unix_near, unix_far = socket.socketpair()
    listener = socket.create_server(("127.0.0.1", 0))
    tcp_near = socket.create_connection(listener.getsockname())
    tcp_far, _ = listener.accept()
    for sock in (tcp_near, tcp_far):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for far in (unix_far, tcp_far):
        threading.Thread(target=echo_over, args=(far,), daemon=True).start()

    def round_trip(sock: socket.socket) -> Callable[[], object]:
        def trip() -> None:
            sock.sendall(b"x" * 100)
            received = 0
            while received < 100:
                received += len(sock.recv(4096))

        return trip

    cases: dict[str, Callable[[], object]] = {
        "back to back": lambda: None,
        "python": python_work,
        "thread ping-pong": ping_pong,
        "data 2 MB": l2.sum,
        "data 32 MB": l3.sum,
        "unix socket round trip": round_trip(unix_near),
        "tcp loopback round trip": round_trip(tcp_near),
        "sleep 200 µs": lambda: time.sleep(200e-6),
    }
    print(f"onnxruntime {ort.__version__}, 1 row, median of {args.runs} runs, wall µs")
    print("  after (back to back unless said):")
    for name, between in cases.items():
        count = args.runs if name != "data 32 MB" else max(1, args.runs // 3)
        print(f"  {name:34s} {timed_runs(lead_run, between, count):6.1f}")

    no_pattern = session(enable_mem_pattern=False)
    no_arena = session(enable_cpu_mem_arena=False)
    unoptimised = session(graph_optimization_level=ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    value = ort.OrtValue.ortvalue_from_numpy(row)
    weights = np.linspace(-1, 1, 16, dtype=np.float32)

    def numpy_model(features: np.ndarray) -> object:
        contributions = features * weights
        logit = contributions.sum(axis=1, keepdims=True)
        return 1 / (1 + np.exp(-logit)), logit, contributions

    hot_numpy = timed_runs(lambda: numpy_model(row), lambda: None, args.runs)
    print(f"  {'back to back, numpy, not onnxruntime':34s} {hot_numpy:6.1f}")
    ways: dict[str, Callable[[], object]] = {
        "run": lead_run,
        "run, one output": lambda: run(["contributions"], {"features": row}, None),
        "run, all outputs": lambda: run(OUTPUTS, {"features": row}, None),
        "run_with_ort_values": lambda: base._sess.run_with_ort_values(
            {"features": value._ortvalue}, OUTPUTS, None
        ),
        "run, no memory pattern": lambda: no_pattern._sess.run(OUTPUTS, {"features": row}, None),
        "run, no CPU arena": lambda: no_arena._sess.run(OUTPUTS, {"features": row}, None),
        "run, graph not optimised": lambda: unoptimised._sess.run(OUTPUTS, {"features": row}, None),
        # A control that is not onnxruntime: arithmetic of the model's size in five numpy calls.
        "numpy, not onnxruntime": lambda: numpy_model(row),
    }
    after_calls, after_turns = asyncio.run(grpc_cases(ways, args.runs))
    for name, median in after_calls.items():
        print(f"  after a grpc call: {name:27s} {median:6.1f}")
    for name, median in after_turns.items():
        print(f"  on the event loop, after {name}: run {median:6.1f}")


if __name__ == "__main__":
    main()
