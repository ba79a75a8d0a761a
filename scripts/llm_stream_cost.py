"""Event-loop CPU one streamed LLM answer costs the gateway's LLM client (thread CPU time, ms).

Starts ``benchmarks.fake_llm`` (the loopback OpenAI-protocol stand-in) in a subprocess, set to
answer with ``--chunks`` texts ``--gap-ms`` apart, and streams ``--n`` answers per repetition
through ``runtimes.llm.LLMClient.stream_chat``, the gateway's own client, ``--concurrency`` at a
time. Reports the minimum and median over ``--reps`` repetitions of this thread's CPU per
answer: what one summary's stream costs the worker's event loop, with the stand-in's CPU in its
own process. With a gap, each chunk arrives in a read of its own, as a real model's do; without
one, several may share a read.

``--http-client aiohttp,httpx`` measures each of the client's transports (the
``llm_http_client`` setting), their repetitions interleaved, the order swapped every repetition.
``--event-loop uvloop`` runs on the gateway's default loop instead of asyncio's own.

    python scripts/llm_stream_cost.py [--chunks 40] [--n 30] [--reps 7] [--gap-ms 0]
        [--concurrency 1] [--http-client aiohttp] [--event-loop asyncio]

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
from typing import Literal, cast, get_args

from runtimes.llm import CircuitBreaker, LLMClient, LLMConfig
from runtimes.llm.client import ChatMessage, StreamDone, TextDelta

HttpClient = Literal["aiohttp", "httpx"]

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


def _pace(port: int, chunks: int, gap_s: float) -> None:
    body = json.dumps({"first_delay_s": 0.0, "gap_s": gap_s, "chunks": chunks}).encode()
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


async def _answers(client: LLMClient, n: int, concurrency: int) -> None:
    slots = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with slots:
            await _one(client)

    await asyncio.gather(*(one() for _ in range(n)))


async def _measure(
    port: int, chunks: int, n: int, reps: int, concurrency: int, kinds: list[HttpClient]
) -> dict[HttpClient, list[float]]:
    clients = {
        kind: LLMClient(
            LLMConfig(
                base_url=f"http://127.0.0.1:{port}/v1", model="bench-fake-llm", http_client=kind
            ),
            breaker=CircuitBreaker(1000, 1.0),
        )
        for kind in kinds
    }
    try:
        for client in clients.values():
            await client.warm()
            for _ in range(5):
                if await _one(client) != chunks:
                    raise RuntimeError(f"expected {chunks} texts per answer")
        per_answer_ms: dict[HttpClient, list[float]] = {kind: [] for kind in kinds}
        for rep in range(reps):
            for kind in kinds if rep % 2 == 0 else kinds[::-1]:
                started = time.thread_time()
                await _answers(clients[kind], n, concurrency)
                per_answer_ms[kind].append((time.thread_time() - started) / n * 1e3)
        return per_answer_ms
    finally:
        for client in clients.values():
            await client.aclose()


def _http_clients(text: str) -> list[HttpClient]:
    kinds = [kind.strip() for kind in text.split(",") if kind.strip()]
    for kind in kinds:
        if kind not in get_args(HttpClient):
            raise argparse.ArgumentTypeError(f"{kind!r}: expected aiohttp or httpx")
    if not kinds or len(set(kinds)) != len(kinds):
        raise argparse.ArgumentTypeError("a comma-separated list of aiohttp and httpx, each once")
    return cast(list[HttpClient], kinds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=40, help="texts per answer (default 40)")
    parser.add_argument("--n", type=int, default=30, help="answers per repetition (default 30)")
    parser.add_argument("--reps", type=int, default=7, help="repetitions (default 7)")
    parser.add_argument(
        "--gap-ms", type=float, default=0.0, help="pause between chunks (default 0)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=1, help="answers streaming at once (default 1)"
    )
    parser.add_argument(
        "--http-client",
        type=_http_clients,
        default=["aiohttp"],
        help="the client's transports, comma-separated: aiohttp, httpx (default aiohttp)",
    )
    parser.add_argument(
        "--event-loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="the event loop to stream on (default asyncio; the gateway's default is uvloop)",
    )
    args = parser.parse_args(argv)
    run = asyncio.run
    if args.event_loop == "uvloop":
        import uvloop

        run = uvloop.run
    process, port = _start_stand_in()
    try:
        _pace(port, args.chunks, args.gap_ms / 1e3)
        measured = run(
            _measure(port, args.chunks, args.n, args.reps, args.concurrency, args.http_client)
        )
    finally:
        process.terminate()
        process.wait(10)
    for kind, per_answer in measured.items():
        print(
            f"LLMClient.stream_chat ({kind}), {args.chunks} chunks: event-loop CPU per answer "
            f"min {min(per_answer):.2f} ms, median {statistics.median(per_answer):.2f} ms "
            f"({args.reps} x {args.n} answers, {args.concurrency} at a time, {args.event_loop}, "
            f"{args.gap_ms:g} ms apart; each rep: "
            + ", ".join(f"{ms:.2f}" for ms in per_answer)
            + ")"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
