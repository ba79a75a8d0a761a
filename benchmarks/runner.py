"""Runs one load shape against one target: spawns the generator processes, starts them together,
samples the server's CPU over the measured window, and merges what they report."""

from __future__ import annotations

import math
import multiprocessing
import multiprocessing.process
import os
import queue as queue_module
import time
from collections.abc import Sequence
from dataclasses import replace

import psutil

from benchmarks.loadgen import LoadShape, WorkerOutcome, WorkerPlan, worker_main
from benchmarks.progress import ProgressSink
from benchmarks.results import RunResult, merge_outcomes
from benchmarks.targets import Preflight, Target, TargetError

# No Python asyncio process sends unary gRPC calls this fast; asking for more is a typo.
MAX_RATE_PER_PROCESS = 20_000.0
SPAWN_TIMEOUT_S = 60.0  # a spawned process imports grpc, numpy and onnxruntime before it is ready


class LoadError(Exception):
    """The load could not be generated as asked; one line for the user."""


def check_shape(shape: LoadShape, processes: int, name: str) -> None:
    """Refuse, before anything starts, a shape ``processes`` generators cannot produce."""
    if shape.mode == "open":
        if not math.isfinite(shape.rate) or shape.rate <= 0:
            raise LoadError(
                f"--rate must be a positive number of requests per second, not {shape.rate}"
            )
        if shape.rate / processes > MAX_RATE_PER_PROCESS:
            raise LoadError(
                f"{name}: a rate of {shape.rate:g}/s is more than {processes} generator "
                f"process(es) can send (at most {MAX_RATE_PER_PROCESS:g}/s each); lower --rate "
                "or raise --processes"
            )
    elif shape.concurrency < 1:
        raise LoadError("--concurrency must be at least 1")


def plans(target: Target, shape: LoadShape) -> list[WorkerPlan]:
    """Split concurrency or rate across processes; fixed arrivals interleave evenly."""
    processes = 1 if target.in_process else shape.processes
    if shape.mode == "closed":
        processes = min(processes, shape.concurrency)
        base, extra = divmod(shape.concurrency, processes)
        return [
            WorkerPlan(i, target, shape, base + (i < extra), 0.0, 0.0) for i in range(processes)
        ]
    share = shape.rate / processes
    return [WorkerPlan(i, target, shape, 0, share, i / shape.rate) for i in range(processes)]


def _cpu_seconds(pid: int | None) -> float | None:
    """User + system seconds of a process and all its children so far."""
    if pid is None:
        return None
    try:
        root = psutil.Process(pid)
        total = 0.0
        for proc in [root, *root.children(recursive=True)]:
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                continue
        return total
    except psutil.NoSuchProcess:
        return None


def run_load(
    target: Target, shape: LoadShape, preflight: Preflight, progress: ProgressSink, label: str
) -> RunResult:
    """Generate ``shape`` against ``target`` and return the merged result."""
    check_shape(shape, 1 if target.in_process else shape.processes, target.name)
    # Requests may take their full deadline after the window; then the generator stops anyway.
    timeout_s = getattr(target, "timeout_s", 5.0)
    shape = replace(shape, drain_s=max(shape.drain_s, timeout_s + 1.0))
    context = multiprocessing.get_context("spawn")  # fork and gRPC's threads do not mix
    messages = context.Queue()
    go = context.Event()
    start_at = context.Value("d", 0.0)
    processes = [
        context.Process(
            target=worker_main,
            args=(plan, messages, go, start_at),
            daemon=True,
            name=f"leadgw-bench-{plan.index}",
        )
        for plan in plans(target, shape)
    ]
    for process in processes:
        process.start()
    try:
        _wait_ready(messages, processes, shape.connect_timeout_s + SPAWN_TIMEOUT_S)
        start = time.monotonic() + 0.2
        start_at.value = start
        go.set()
        outcomes, server_cpu = _collect(messages, target, shape, start, progress, label, processes)
    finally:
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
    return merge_outcomes(
        target.name,
        shape,
        target.rows_per_request,
        preflight,
        outcomes,
        server_cpu,
        os.cpu_count() or 1,
        target.in_process,
    )


def _wait_ready(
    messages: multiprocessing.Queue,
    processes: Sequence[multiprocessing.process.BaseProcess],
    timeout_s: float,
) -> None:
    ready = 0
    deadline = time.monotonic() + timeout_s
    while ready < len(processes):
        if time.monotonic() > deadline:
            raise LoadError(f"generator processes not ready after {timeout_s:g} s")
        try:
            message = messages.get(timeout=0.1)
        except queue_module.Empty:
            if any(p.exitcode not in (0, None) for p in processes):
                raise LoadError("a generator process exited before it was ready") from None
            continue
        if message[0] == "ready":
            ready += 1
        elif message[0] == "failed":
            raise TargetError(message[2])


def _collect(
    messages: multiprocessing.Queue,
    target: Target,
    shape: LoadShape,
    start: float,
    progress: ProgressSink,
    label: str,
    processes: Sequence[multiprocessing.process.BaseProcess],
) -> tuple[list[WorkerOutcome], float | None]:
    measure_start = start + shape.warmup_s
    end = measure_start + shape.duration_s
    give_up = end + shape.drain_s + 15.0
    progress.begin(label, shape.warmup_s + shape.duration_s)
    completed: dict[int, tuple[int, int]] = {}
    outcomes: dict[int, WorkerOutcome] = {}
    cpu_before: float | None = None
    cpu_after: float | None = None
    try:
        while len(outcomes) < len(processes):
            now = time.monotonic()
            if cpu_before is None and now >= measure_start:
                cpu_before = _cpu_seconds(target.server_pid)
            if cpu_after is None and now >= end:
                cpu_after = _cpu_seconds(target.server_pid)
            if now > give_up:
                raise LoadError(f"{target.name}: generator processes did not finish in time")
            if any(not p.is_alive() and p.exitcode not in (0, None) for p in processes):
                raise LoadError(f"{target.name}: a generator process died")
            try:
                message = messages.get(timeout=0.05)
            except queue_module.Empty:
                continue
            kind, index, *rest = message
            if kind == "progress":
                completed[index] = (rest[0], rest[1])
                progress.update(
                    now - start,
                    sum(c for c, _ in completed.values()),
                    sum(e for _, e in completed.values()),
                )
            elif kind == "done":
                outcomes[index] = rest[0]
            elif kind == "failed":
                raise TargetError(rest[0])
        if cpu_after is None:
            cpu_after = _cpu_seconds(target.server_pid)
    finally:
        progress.end()
    server_cpu = None
    if cpu_before is not None and cpu_after is not None:
        server_cpu = cpu_after - cpu_before
    return [outcomes[i] for i in sorted(outcomes)], server_cpu
