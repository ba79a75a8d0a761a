"""A run outside the batcher's queue (``admit_off_queue`` → ``run_off_queue`` on the caller's
thread → ``settle_off_queue``): admitted and counted as ``submit`` would, run where the caller is.

The batch function is the batcher tests' recording ``Model`` (batcher_helpers.py): a real numpy computation that
can be held on a gate and notes the thread each batch ran on.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable

import numpy as np
import pytest

from runtimes.batcher import DynamicBatcher
from runtimes.errors import DeadlineExceeded, ResourceExhausted, Unavailable
from tests.runtimes.batcher_helpers import (
    Model,
    assert_own_rows,
    batcher_factory,
    rows,
    started_task,
)

pytestmark = pytest.mark.timeout(30)


class ThreadNotingModel(Model):
    def __init__(self) -> None:
        super().__init__()
        self.threads: list[str] = []

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        self.threads.append(threading.current_thread().name)
        return super().__call__(x)


@pytest.fixture
def model() -> ThreadNotingModel:
    return ThreadNotingModel()


@pytest.fixture
async def make(model: ThreadNotingModel) -> AsyncIterator[Callable[..., DynamicBatcher]]:
    async with batcher_factory(model) as factory:
        yield factory


async def test_the_run_happens_on_the_callers_thread_and_counts_as_a_batch(make, model) -> None:
    batcher = make()
    x = rows(40, 0.0)
    run = batcher.admit_off_queue(40, deadline=None)

    def on_a_thread() -> dict[str, np.ndarray]:
        return batcher.run_off_queue(run, x)

    thread_name = "caller-thread"
    box: list[dict[str, np.ndarray]] = []
    worker = threading.Thread(target=lambda: box.append(on_a_thread()), name=thread_name)
    worker.start()
    await asyncio.to_thread(worker.join, 5)
    assert_own_rows(x, box[0])
    assert model.threads == [thread_name]
    assert batcher.stats.batches == 0  # counted only when settled, on the loop
    batcher.settle_off_queue(run)
    stats = batcher.stats
    assert (stats.batches, stats.rows, stats.expired, stats.failed_batches) == (1, 40, 0, 0)
    assert run.batch_id == 1 and run.outcome == "ran"
    # The next batch through the queue takes the next id.
    result = await batcher.submit_with_stats(rows(2, 500.0))
    assert result.batch_id == 2


async def test_a_deadline_passed_before_the_run_computes_nothing(make, model) -> None:
    batcher = make()
    run = batcher.admit_off_queue(8, deadline=time.monotonic() + 0.05)
    run.deadline = time.monotonic() - 0.001  # as if the conversion before the run took too long
    with pytest.raises(DeadlineExceeded, match="before the model ran"):
        batcher.run_off_queue(run, rows(8, 0.0))
    batcher.settle_off_queue(run)
    assert model.batches == []
    assert (batcher.stats.expired, batcher.stats.batches) == (1, 0)


async def test_admission_refuses_as_submit_does(make, model) -> None:
    with pytest.raises(DeadlineExceeded):
        make().admit_off_queue(8, deadline=time.monotonic() - 1)
    batcher = make(max_queue_size=4)
    model.hold()
    first = await started_task(batcher, rows(1, 0.0))
    await model.wait_started()
    queued = await started_task(batcher, rows(3, 10.0))
    with pytest.raises(ResourceExhausted) as refused:
        batcher.admit_off_queue(2, deadline=None)
    assert refused.value.retry_after_s is not None and refused.value.retry_after_s > 0
    assert batcher.stats.rejected == 1
    model.gate.set()
    await asyncio.gather(first, queued)
    await batcher.close()
    with pytest.raises(Unavailable, match="shutting down"):
        batcher.admit_off_queue(2, deadline=None)


async def test_a_failing_model_counts_a_failed_batch(make, model) -> None:
    batcher = make()
    model.fail_on = 3.0
    run = batcher.admit_off_queue(4, deadline=None)
    with pytest.raises(ValueError, match="model blew up"):
        await asyncio.to_thread(batcher.run_off_queue, run, rows(4, 0.0))
    batcher.settle_off_queue(run)
    assert (batcher.stats.failed_batches, batcher.stats.batches) == (1, 0)
