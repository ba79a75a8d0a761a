"""A gateway's CPU per summary, by thread: what each SummarizeLead costs the worker.

Starts the bench's LLM stand-in (40 chunks, no pauses: the LLM itself costs nothing here) and a
one-worker gateway on the demo corpus (summary cache off, tracing off), runs ``--warmup``
summaries, then ``--summaries`` more one after another over the demo leads, and prints each
gateway thread's CPU (from ``/proc``) divided by the count, plus how many summaries fell back.

Run from the repository root, under the measurement lock; ``PYTHONPATH=<tree>`` runs another
tree's gateway (an A/B) with this one's script::

    python scripts/summary_cpu.py [--summaries 100] [--warmup 10]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

import grpc

from benchmarks.fake_llm import Pacing, set_pacing
from benchmarks.servers import start_listening_server
from benchmarks.summary_suite import gateway_env
from leadgw_client.pb.leadgw.v1 import lead_service_pb2 as pb
from leadgw_client.pb.leadgw.v1 import lead_service_pb2_grpc as pb_grpc

sys.path.insert(0, str(Path(__file__).parent))
from thread_cpu import print_threads, thread_ticks

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--summaries", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="leadgw-summary-cpu-") as data_dir:
        llm = start_listening_server(
            "fake-llm", [sys.executable, "-m", "benchmarks.fake_llm"], 30.0
        )
        try:
            asyncio.run(set_pacing(llm.address, Pacing(first_delay_s=0.0, gap_s=0.0, chunks=40)))
            env = gateway_env(
                Path(data_dir),
                llm.address,
                4,
                (("load_demo_corpus", "true"), ("workers", "1")),
            )
            command = [sys.executable, "-m", "gateway", "serve", "--port", "0"]
            gateway = start_listening_server("leadgw-summary-cpu", command, 120.0, env)
            try:
                asyncio.run(summaries(gateway.address, args.warmup, 0))
                pids = process_tree(gateway.pid)
                before = thread_ticks(pids)
                reasons = asyncio.run(summaries(gateway.address, args.summaries, args.warmup))
                after = thread_ticks(pids)
            finally:
                gateway.stop()
        finally:
            llm.stop()
    total = print_threads(before, after, args.summaries, "ms per summary")
    print(f"total {total:.2f} ms per summary; fallbacks: {reasons or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
