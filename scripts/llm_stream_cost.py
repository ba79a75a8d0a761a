"""Event-loop CPU one streamed LLM answer costs the gateway's LLM client (thread CPU time, ms).

Starts ``benchmarks.fake_llm`` (the loopback OpenAI-protocol stand-in) in a subprocess, set to
answer at once with ``--chunks`` texts, and streams ``--n`` answers per repetition through
``runtimes.llm.LLMClient.stream_chat``, the gateway's own client, one after another. Reports
the minimum and median over ``--reps`` repetitions of this thread's CPU per answer: what one
summary's stream costs the worker's event loop, with the stand-in's CPU in its own process.

    python scripts/llm_stream_cost.py [--chunks 40] [--n 30] [--reps 7]

To compare two trees, run it with each tree first on ``PYTHONPATH``, alternating, under the
measurement lock (docs/perf/2026-11-28-direct.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import sys
import time
import urllib.request

from runtimes.llm import CircuitBreaker, LLMClient, LLMConfig
from runtimes.llm.client import ChatMessage, StreamDone, TextDelta

# A prompt of a summary's size (~2,000 characters), so that the request's encoding is counted.
MESSAGES = (
    ChatMessage("system", "You summarise a wealth-management lead's notes. " * 10),
    ChatMessage("user", "Notes:\n" + "[1] 2026-11-02 call: asked about annuity income. " * 30),
)


def _start_stand_in() -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.fake_llm"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    found = re.search(r":(\d+)", process.stdout.readline())
    if found is None:
        process.kill()
        raise SystemExit("the LLM stand-in did not say where it listens")
    return process, int(found.group(1))


def _pace(port: int, chunks: int) -> None:
    body = json.dumps({"first_delay_s": 0.0, "gap_s": 0.0, "chunks": chunks}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/bench/reply",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:  # loopback only
        answer.read()


async def _one(client: LLMClient) -> int:
    now = time.monotonic()
    texts = 0
    done = False
    async for event in client.stream_chat(MESSAGES, first_token_by=now + 10, finish_by=now + 20):
        texts += isinstance(event, TextDelta)
        done = done or isinstance(event, StreamDone)
    if not done:
        raise RuntimeError("the stream ended without its final event")
    return texts


async def _measure(port: int, chunks: int, n: int, reps: int) -> list[float]:
    client = LLMClient(
        LLMConfig(base_url=f"http://127.0.0.1:{port}/v1", model="bench-fake-llm"),
        breaker=CircuitBreaker(1000, 1.0),
    )
    try:
        await client.warm()
        for _ in range(5):
            if await _one(client) != chunks:
                raise RuntimeError(f"expected {chunks} texts per answer")
        per_answer_ms = []
        for _ in range(reps):
            started = time.thread_time()
            for _ in range(n):
                await _one(client)
            per_answer_ms.append((time.thread_time() - started) / n * 1e3)
        return per_answer_ms
    finally:
        await client.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=40, help="texts per answer (default 40)")
    parser.add_argument("--n", type=int, default=30, help="answers per repetition (default 30)")
    parser.add_argument("--reps", type=int, default=7, help="repetitions (default 7)")
    args = parser.parse_args(argv)
    process, port = _start_stand_in()
    try:
        _pace(port, args.chunks)
        per_answer = asyncio.run(_measure(port, args.chunks, args.n, args.reps))
    finally:
        process.terminate()
        process.wait(10)
    print(
        f"LLMClient.stream_chat, {args.chunks} chunks: event-loop CPU per answer "
        f"min {min(per_answer):.2f} ms, median {statistics.median(per_answer):.2f} ms "
        f"({args.reps} x {args.n} answers)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
