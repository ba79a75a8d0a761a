"""``SummarizeLead`` from the client side: one timed stream, and a process keeping N streams open.

A stream is timed to its first text message (what the advisor waits for) and to its end; the
server's own breakdown (score, retrieve, prompt, first token) comes in the final message.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing.queues
import multiprocessing.synchronize
import time
from dataclasses import dataclass, field

import grpc

from benchmarks.leads import Feature, score_leads_request
from leadgw_client.pb.leadgw.v1 import lead_service_pb2 as pb
from leadgw_client.pb.leadgw.v1 import lead_service_pb2_grpc as pb_grpc


def summary_requests(
    schema: list[Feature], rows: list[list[object]], leads: int, model: str
) -> list[bytes]:
    """One request per row, each for one of the filled store's leads, with that row's features."""
    scored = score_leads_request(schema, rows, model)
    requests = []
    for i, lead in enumerate(scored.leads):
        request = pb.SummarizeLeadRequest(lead_id=f"lead-{(i * 37) % leads:04d}", model_name=model)
        request.features.MergeFrom(lead.features)
        requests.append(request.SerializeToString())
    return requests


@dataclass(slots=True)
class SummarySample:
    """One finished stream: client times in seconds, the server's breakdown in milliseconds."""

    first_text_s: float
    total_s: float
    texts: int
    fallback: bool
    fallback_reason: str
    score_ms: float
    retrieve_ms: float
    prompt_ms: float
    first_token_ms: float


async def one_summary(
    stub: pb_grpc.LeadServiceStub, request: bytes, timeout_s: float
) -> SummarySample:
    """Runs one stream to its end; raises ``grpc.aio.AioRpcError`` or ``ValueError``."""
    started = time.perf_counter()
    first_text = 0.0
    texts = 0
    final: pb.SummaryFinal | None = None
    call = stub.SummarizeLead(pb.SummarizeLeadRequest.FromString(request), timeout=timeout_s)
    async for message in call:
        if message.HasField("final"):
            final = message.final
        elif not texts:
            first_text = time.perf_counter() - started
            texts = 1
        else:
            texts += 1
    if final is None:
        raise ValueError("the stream ended without its final message")
    latency = final.latency
    return SummarySample(
        first_text_s=first_text,
        total_s=time.perf_counter() - started,
        texts=texts,
        fallback=final.fallback,
        fallback_reason=final.fallback_reason,
        score_ms=latency.score_ms,
        retrieve_ms=latency.retrieve_ms,
        prompt_ms=latency.prompt_ms,
        first_token_ms=latency.first_token_ms,
    )


@dataclass(slots=True)
class HoldCounts:
    """What the background streams did, from the holder's start to its stop."""

    started: int = 0
    completed: int = 0
    fallbacks: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    open_now: int = 0  # streams that have shown text and not yet ended
    min_open: int | None = None  # fewest open at once while the caller measured

    def fail(self, code: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1


async def _hold(
    address: str,
    requests: list[bytes],
    concurrency: int,
    replace: bool,
    timeout_s: float,
    measuring: multiprocessing.synchronize.Event,
    stop: multiprocessing.synchronize.Event,
    queue: multiprocessing.queues.Queue,
) -> None:
    counts = HoldCounts()
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.LeadServiceStub(channel)

        async def slot(index: int) -> None:
            n = index
            while not stop.is_set():
                counts.started += 1
                opened = False
                try:
                    call = stub.SummarizeLead(
                        pb.SummarizeLeadRequest.FromString(requests[n % len(requests)]),
                        timeout=timeout_s,
                    )
                    async for message in call:
                        if message.HasField("final"):
                            counts.fallbacks += message.final.fallback
                        elif not opened:
                            opened = True
                            counts.open_now += 1
                    counts.completed += 1
                except grpc.aio.AioRpcError as exc:
                    counts.fail(exc.code().name)
                    await asyncio.sleep(0.1)  # a refused stream must not spin
                finally:
                    counts.open_now -= opened
                if not replace:
                    return
                n += concurrency

        async def watch() -> None:
            while not stop.is_set():
                if measuring.is_set():
                    low = counts.min_open
                    counts.min_open = counts.open_now if low is None else min(low, counts.open_now)
                queue.put(("open", counts.open_now))
                await asyncio.sleep(0.05)

        tasks = [asyncio.create_task(slot(i)) for i in range(concurrency)]
        watcher = asyncio.create_task(watch())
        await asyncio.to_thread(stop.wait)
        for task in [*tasks, watcher]:
            task.cancel()
        for task in [*tasks, watcher]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
    # A stream cut by the stop is neither completed nor failed: it was still running.
    queue.put(("done", counts))


def hold_main(
    address: str,
    requests: list[bytes],
    concurrency: int,
    replace: bool,
    timeout_s: float,
    measuring: multiprocessing.synchronize.Event,
    stop: multiprocessing.synchronize.Event,
    queue: multiprocessing.queues.Queue,
) -> None:
    """Entry point of the spawned process that keeps ``concurrency`` summaries streaming; with
    ``replace`` a finished one is started again at once, else each slot streams once."""
    try:
        asyncio.run(
            _hold(address, requests, concurrency, replace, timeout_s, measuring, stop, queue)
        )
    except Exception as exc:
        queue.put(("failed", " ".join(str(exc).split())[:300] or type(exc).__name__))
