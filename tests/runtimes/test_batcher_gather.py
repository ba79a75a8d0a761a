"""Gathering under load: a batcher with ``gather_delay_s`` lets back-to-back callers share runs
of the model, decided by what its probes find, and leaves a sequential caller alone.

Each caller here does what ``ServedModel.infer`` does: ``run_now`` first, ``submit`` if it
declines. The batch function is fast and runs on the loop (``inline_run_s``), as the bundled
model does in a worker, where requests never overlap by themselves
(docs/perf/2026-12-01-gathering.md)."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from runtimes.batcher import DynamicBatcher
from runtimes.batching_config import BatchingConfig

pytestmark = pytest.mark.timeout(30)

GATHER_S = 0.02  # long enough for every waiting caller of a test to arrive meanwhile


class Recorder:
    """A fast batch function that records each batch's rows."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        self.sizes.append(len(x))
        return {"sum": x.sum(axis=1)}


def make(model: Recorder, gather_delay_s: float = GATHER_S) -> DynamicBatcher:
    return DynamicBatcher(
        model,
        max_batch_size=64,
        max_queue_delay_s=0.001,
        max_queue_size=1024,
        name="gather",
        inline_run_s=10.0,
        computes_on_caller=True,
        gather_delay_s=gather_delay_s,
    )


def row(value: float) -> np.ndarray:
    return np.full((1, 3), value, dtype=np.float32)


async def infer(batcher: DynamicBatcher, value: float) -> float:
    """One call as the served model makes it; checks the caller got its own row's answer."""
    x = row(value)
    outputs = batcher.run_now(x)
    if outputs is None:
        outputs = await batcher.submit(x)
    assert outputs["sum"].tolist() == [3 * value]
    return float(outputs["sum"][0])


async def timed(batcher: DynamicBatcher) -> None:
    """A first run, so that later single rows are known to fit on the loop."""
    await batcher.submit(row(-1.0))


async def callers(
    batcher: DynamicBatcher, clients: int, calls: int, *, spread: bool = True
) -> None:
    """``clients`` callers, each making ``calls`` calls one after another. ``spread``: client c
    sends each call (c + 1) / (clients + 4) of ``GATHER_S`` after its previous answer, so that
    arrivals keep coming through a gathering wait, as on a saturated worker; otherwise a loop
    pass after it, so that every caller arrives at the start of the wait."""

    async def client(c: int) -> None:
        pause = (c + 1) * GATHER_S / (clients + 4) if spread else 0.0
        for i in range(calls):
            await asyncio.sleep(pause)
            await infer(batcher, c * 1000.0 + i)

    await asyncio.gather(*(client(c) for c in range(clients)))


async def test_back_to_back_callers_share_runs_once_a_probe_finds_company() -> None:
    model = Recorder()
    batcher = make(model)
    try:
        await timed(batcher)
        await callers(batcher, clients=16, calls=10)
        stats = batcher.stats
    finally:
        await batcher.close()
    assert stats.rows == 1 + 16 * 10
    assert stats.gather_probes >= 1
    assert stats.gathered_batches >= 5
    # Without gathering every call is a batch of one (the test below with gather_delay_s=0).
    assert max(model.sizes) >= 8
    assert stats.batches < (16 * 10) / 4


async def test_without_gathering_back_to_back_callers_each_run_alone() -> None:
    """The behaviour gathering changes: calls that never overlap never share a run."""
    model = Recorder()
    batcher = make(model, gather_delay_s=0.0)
    try:
        await timed(batcher)
        await callers(batcher, clients=16, calls=10)
        stats = batcher.stats
    finally:
        await batcher.close()
    assert model.sizes[1:] == [1] * (16 * 10)
    assert (stats.gather_probes, stats.gathered_batches) == (0, 0)


async def test_a_sequential_caller_pays_one_probe_and_then_runs_at_once() -> None:
    model = Recorder()
    batcher = make(model)
    try:
        await timed(batcher)
        ran_at_once = 0
        for i in range(50):
            if batcher.run_now(row(float(i))) is not None:
                ran_at_once += 1
            else:
                await batcher.submit(row(float(i)))
            await asyncio.sleep(0)
        stats = batcher.stats
        gathering = batcher.gathering
    finally:
        await batcher.close()
    # Its calls come far less than gather_delay_s apart: the second is a probe, waits alone,
    # and gathering stops; no other probe within GATHER_PROBE_EVERY_S.
    assert (stats.gather_probes, stats.gathered_batches) == (1, 1)
    assert ran_at_once == 49
    assert not gathering
    assert model.sizes == [1] * 51


async def test_gathering_outlasts_a_lone_batch_and_stops_when_the_load_goes() -> None:
    model = Recorder()
    batcher = make(model)
    try:
        await timed(batcher)
        await callers(batcher, clients=16, calls=10)
        assert batcher.gathering
        # Alone, a call waits and finds no company. Under load that happens by chance, so one
        # such batch does not end gathering (it would then stay off until the next probe) ...
        await infer(batcher, 0.5)
        assert batcher.gathering
        # ... but batches of one, idle after their only arrival, end it within a few.
        lone = 1
        while batcher.gathering and lone < 20:
            await infer(batcher, 0.5 + lone)
            lone += 1
        assert not batcher.gathering
        assert lone <= 12  # from an average of 16 requests at 1/4 weight: 9 at most
        before = batcher.stats.batches
        assert batcher.run_now(row(0.25)) is not None  # at once again
        assert batcher.stats.batches == before + 1
    finally:
        await batcher.close()


async def test_a_few_callers_that_all_arrive_early_in_the_wait_stop_gathering() -> None:
    """Four callers, each calling again a loop pass after its answer: all four join the probe's
    batch at once, and the loop then idles until the wait ends. Waiting only costs them
    latency, so gathering stops after that batch (the next probe is GATHER_PROBE_EVERY_S
    away), although the batch had four requests."""
    model = Recorder()
    batcher = make(model)
    try:
        await timed(batcher)
        await callers(batcher, clients=4, calls=20, spread=False)
        stats = batcher.stats
        gathering = batcher.gathering
    finally:
        await batcher.close()
    assert (stats.gather_probes, stats.gathered_batches) == (1, 1)
    assert not gathering
    assert max(model.sizes) >= 3  # the probe's batch: three or four of them shared it
    assert stats.rows == 1 + 4 * 20


async def test_a_gathering_callers_deadline_still_flushes_its_batch_in_time() -> None:
    """A deadline shorter than the gathering wait is kept: the batch runs before it."""
    model = Recorder()
    batcher = make(model, gather_delay_s=5.0)
    try:
        await timed(batcher)
        batcher.run_now(row(1.0))  # sets the last arrival: the next call is a probe
        deadline = time.monotonic() + 0.2
        assert batcher.run_now(row(2.0), deadline) is None
        assert batcher.gathering
        result = await asyncio.wait_for(batcher.submit(row(2.0), deadline=deadline), 2.0)
    finally:
        await batcher.close()
    assert result["sum"].tolist() == [6.0]


async def test_gather_delay_is_read_from_the_batching_table() -> None:
    assert BatchingConfig().gather_delay_s == 0.0  # off unless the model's config sets it
    assert BatchingConfig.from_table({"gather_delay_us": 0}).gather_delay_s == 0.0
    assert BatchingConfig.from_table({"gather_delay_us": 750}).gather_delay_s == 0.00075
    with pytest.raises(ValueError, match="gather_delay_us must be a non-negative integer"):
        BatchingConfig.from_table({"gather_delay_us": -1})
    batcher = DynamicBatcher.from_config(
        Recorder(), BatchingConfig.from_table({"gather_delay_us": 1500})
    )
    await batcher.close()
    assert batcher.gather_delay_s == 0.0015


def test_a_negative_gather_delay_is_refused() -> None:
    with pytest.raises(ValueError, match="gather_delay_s"):
        make(Recorder(), gather_delay_s=-0.001)
