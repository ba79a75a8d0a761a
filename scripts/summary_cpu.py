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
setting in one tree, e.g. ``--setting llm_http_client=httpx``.
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
