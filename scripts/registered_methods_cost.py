"""What gRPC "registered methods" cost a grpc.aio server per call, with nothing else in the way.

A bare grpc.aio server on uvloop (a child process) answers ``/t.T/M`` with canned bytes. It has
either no registered methods (every method a generic handler, as the gateway serves) or ``M``
and ``--registered - 1`` more methods registered through ``add_registered_method_handlers`` (as
generated ``add_*Servicer_to_server`` code does), which are never called. One client in this
process sends ``--calls`` unary calls, one in flight, to each kind in turn, ``--rounds`` times
(the order alternating); the server's CPU per call (from /proc) and the client's p50 are printed
per run and as medians. Linux only::

    python scripts/registered_methods_cost.py [--registered 20] [--calls 8000] [--rounds 6]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time

import grpc

CANNED = b"\x0a\x03abc"


async def serve(registered: int) -> None:
    async def answer(_request: bytes, _context: grpc.aio.ServicerContext) -> bytes:
        return CANNED

    server = grpc.aio.server()
    names = ["M", *(f"X{i}" for i in range(max(0, registered - 1)))]
    handlers = {name: grpc.unary_unary_rpc_method_handler(answer) for name in names}
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("t.T", handlers)])
    if registered:
        server.add_registered_method_handlers("t.T", handlers)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    await server.wait_for_termination()


def process_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


async def measure(registered: int, calls: int) -> tuple[float, float]:
    """(server CPU µs per call, client p50 µs) over ``calls`` calls after a warm-up."""
    command = [sys.executable, __file__, "--serve", str(registered)]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary("/t.T/M")
            for _ in range(500):
                await call(b"x")
            start_cpu = process_cpu_s(child.pid)
            latencies = []
            for _ in range(calls):
                start = time.perf_counter()
                await call(b"x")
                latencies.append(time.perf_counter() - start)
            cpu = process_cpu_s(child.pid) - start_cpu
    finally:
        child.terminate()
        child.wait()
    return cpu / calls * 1e6, statistics.median(latencies) * 1e6


async def compare(registered: int, calls: int, rounds: int) -> None:
    results: dict[int, list[tuple[float, float]]] = {0: [], registered: []}
    for round_ in range(rounds):
        order = (0, registered) if round_ % 2 == 0 else (registered, 0)
        for kind in order:
            cpu, p50 = await measure(kind, calls)
            results[kind].append((cpu, p50))
            print(f"round {round_ + 1}: {kind:3d} registered: server CPU {cpu:6.1f} µs/call, "
                  f"p50 {p50:6.1f} µs", flush=True)  # fmt: skip
    for kind, runs in results.items():
        cpu = statistics.median(r[0] for r in runs)
        p50 = statistics.median(r[1] for r in runs)
        print(f"{kind:3d} registered: median server CPU {cpu:.1f} µs/call, median p50 {p50:.1f} µs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--registered", type=int, default=20, help="methods registered (20)")
    parser.add_argument("--calls", type=int, default=8000, help="calls per run (8000)")
    parser.add_argument("--rounds", type=int, default=6, help="runs of each kind (6)")
    parser.add_argument("--serve", type=int, metavar="N", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        import uvloop

        uvloop.run(serve(args.serve))
        return
    if args.registered < 1:
        parser.error("--registered must be at least 1")
    asyncio.run(compare(args.registered, args.calls, args.rounds))


if __name__ == "__main__":
    main()
