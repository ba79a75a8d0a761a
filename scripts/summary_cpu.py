"""A gateway's CPU per summary, by thread: what each SummarizeLead costs the worker.

Starts the bench's LLM stand-in (40 chunks, no pauses: the LLM itself costs nothing here) and a
one-worker gateway on the demo corpus (summary cache off, tracing off), runs ``--warmup``
summaries, then ``--summaries`` more one after another over the demo leads, and prints each
gateway thread's CPU (from ``/proc``) divided by the count, plus how many summaries fell back.

Run from the repository root, under the measurement lock; ``PYTHONPATH=<tree>`` runs another
tree's gateway (an A/B) with this one's script::

    python scripts/summary_cpu.py [--summaries 100] [--warmup 10] [--gap-ms 0]
        [--setting NAME=VALUE ...]

``--gap-ms`` paces the stand-in's chunks that far apart, so that each reaches the gateway in a
read of its own, as a real model's do (without a gap, several share a read).

``--setting`` gives the gateway a setting of its own (``LEADGW_NAME=VALUE``), for an A/B of a
setting in one tree, e.g. ``--setting llm_http_client=httpx``; ``--setting workers=2`` runs
two workers (and, by default, the summaries process: ``--setting summary_process=false`` keeps
summaries in the workers). Each process's total is printed too, with its role.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

import grpc
import psutil

from benchmarks.fake_llm import Pacing, set_pacing
from benchmarks.servers import start_listening_server
from benchmarks.summary_suite import gateway_env
from leadgw_client.pb.leadgw.v1 import lead_service_pb2 as pb
from leadgw_client.pb.leadgw.v1 import lead_service_pb2_grpc as pb_grpc

sys.path.insert(0, str(Path(__file__).parent))
from thread_cpu import TICKS_PER_S, print_threads, thread_ticks

DEMO_LEADS = 24


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process below it (a gateway's workers and store host)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for tid in Path(f"/proc/{current}/task").iterdir():
            children = (tid / "children").read_text().split()
            todo.extend(int(c) for c in children)
    return found


async def summaries(address: str, count: int, start: int) -> dict[str, int]:
    """Runs ``count`` summaries one at a time; returns the fallback reasons seen."""
    reasons: dict[str, int] = {}
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.LeadServiceStub(channel)
        for i in range(start, start + count):
            lead = f"demo-{i % DEMO_LEADS + 1:04d}"
            async for message in stub.SummarizeLead(
                pb.SummarizeLeadRequest(lead_id=lead), timeout=30
            ):
                if message.HasField("final") and message.final.fallback:
                    reason = message.final.fallback_reason
                    reasons[reason] = reasons.get(reason, 0) + 1
    return reasons


def role_of(pid: int, supervisor: int) -> str:
    """What a process of the gateway is: by the Unix socket it listens on (the summaries
    process's and the store host's), else by its CPUs (pinned workers have one)."""
    if pid == supervisor:
        return "supervisor or single process"
    nice = os.getpriority(os.PRIO_PROCESS, pid)
    sockets = " ".join(str(c.laddr) for c in psutil.Process(pid).net_connections(kind="unix"))
    if "summaries.sock" in sockets:
        return f"summaries process (nice {nice})"
    if "store.sock" in sockets:
        return f"store host (nice {nice})"
    if len(os.sched_getaffinity(pid)) == 1:
        return f"worker (CPU {next(iter(os.sched_getaffinity(pid)))})"
    return "worker" if nice == 0 else f"other (nice {nice})"


def print_processes(
    before: dict[tuple[int, int, str], int],
    after: dict[tuple[int, int, str], int],
    per: float,
    roles: dict[int, str],
) -> None:
    """Each process's CPU (its threads added up) divided by ``per``, with its role."""
    by_pid: dict[int, int] = {}
    for key, ticks in after.items():
        by_pid[key[0]] = by_pid.get(key[0], 0) + ticks - before.get(key, 0)
    for pid, ticks in sorted(by_pid.items(), key=lambda item: -item[1]):
        ms = ticks / TICKS_PER_S * 1000 / per
        print(f"process {pid} {roles.get(pid, '?'):32s} {ms:9.3f} ms per summary")


def _setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=VALUE")
    return name.strip(), value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--summaries", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument(
        "--gap-ms", type=float, default=0.0, help="pause between the stand-in's chunks (0)"
    )
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        type=_setting,
        metavar="NAME=VALUE",
        help="a gateway setting (LEADGW_NAME=VALUE); repeatable",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="leadgw-summary-cpu-") as data_dir:
        llm = start_listening_server(
            "fake-llm", [sys.executable, "-m", "benchmarks.fake_llm"], 30.0
        )
        try:
            asyncio.run(
                set_pacing(
                    llm.address, Pacing(first_delay_s=0.0, gap_s=args.gap_ms / 1e3, chunks=40)
                )
            )
            env = gateway_env(
                Path(data_dir),
                llm.address,
                4,
                (("load_demo_corpus", "true"), ("workers", "1"), *args.setting),
            )
            command = [sys.executable, "-m", "gateway", "serve", "--port", "0"]
            gateway = start_listening_server("leadgw-summary-cpu", command, 120.0, env)
            try:
                asyncio.run(summaries(gateway.address, args.warmup, 0))
                pids = process_tree(gateway.pid)
                roles = {pid: role_of(pid, gateway.pid) for pid in pids}
                before = thread_ticks(pids)
                reasons = asyncio.run(summaries(gateway.address, args.summaries, args.warmup))
                after = thread_ticks(pids)
            finally:
                gateway.stop()
        finally:
            llm.stop()
    total = print_threads(before, after, args.summaries, "ms per summary")
    print_processes(before, after, args.summaries, roles)
    print(f"total {total:.2f} ms per summary; fallbacks: {reasons or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
