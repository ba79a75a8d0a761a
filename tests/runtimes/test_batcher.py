"""The dynamic batcher: who gets which rows, when batches flush, and what callers see on refusal.

The only fake is the batch function: a real computation on real numpy arrays that records every
batch it ran and can be held on a gate, so tests order events instead of measuring time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from runtimes.batcher import BatchingConfig, BatchResult, DynamicBatcher
from runtimes.errors import DeadlineExceeded, InvalidInput, ResourceExhausted, Unavailable
from tests.runtimes.batcher_helpers import (
    GUARD_S,
    NEVER_S,
    Model,
    assert_own_rows,
    batcher_factory,
    rows,
    started_task,
)

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def model() -> Iterator[Model]:
    m = Model()
    yield m
    m.gate.set()  # never leave a worker thread parked, or the interpreter waits on it at exit


@pytest.fixture
async def make(model: Model) -> AsyncIterator[Callable[..., DynamicBatcher]]:
    async with batcher_factory(model) as factory:
        yield factory


# ---- who gets what ----------------------------------------------------------------------------


async def test_concurrent_callers_get_their_own_rows_in_order(make, model: Model) -> None:
    batcher = make(max_batch_size=16)
    sizes = [1, 5, 2, 7, 3, 1, 4, 6, 2, 1, 3, 5] * 3
    inputs = [rows(n, start=1000.0 * i) for i, n in enumerate(sizes)]

    outs = await asyncio.gather(*(batcher.submit(x) for x in inputs))

    for x, out in zip(inputs, outs, strict=True):
        assert_own_rows(x, out)
    assert sum(model.sizes) == sum(sizes)  # every row computed exactly once
    assert len(model.batches) < len(sizes)  # requests were merged
    assert max(model.sizes) <= 16


async def test_requests_queued_during_a_batch_merge_into_the_next(make, model: Model) -> None:
    batcher = make(max_queue_delay_s=0.001)
    model.hold()
    first = await started_task(batcher, rows(1, 0.0))
    await model.wait_started()
    queued = [rows(2, 100.0), rows(1, 200.0), rows(3, 300.0)]
    tasks = [await started_task(batcher, x) for x in queued]
    assert batcher.queue_depth_rows == 6
    model.gate.set()

    await first
    for x, task in zip(queued, tasks, strict=True):
        assert_own_rows(x, await task)
    assert model.sizes == [1, 6]
    stats = batcher.stats
    assert (stats.batches, stats.rows) == (2, 7)


async def test_a_caller_cannot_mutate_another_callers_result(make) -> None:
    batcher = make()
    a, b = rows(2, 0.0), rows(2, 50.0)
    out_a, out_b = await asyncio.gather(batcher.submit(a), batcher.submit(b))
    out_a["sum"][:] = -1
    out_a["double"][:] = -1
    assert_own_rows(b, out_b)


async def test_stats_report_queue_wait_batch_size_and_id(make, model: Model) -> None:
    batcher = make()
    model.hold()
    first = asyncio.create_task(batcher.submit_with_stats(rows(1, 0.0)))
    await model.wait_started()
    second = asyncio.create_task(batcher.submit_with_stats(rows(2, 10.0)))
    third = asyncio.create_task(batcher.submit_with_stats(rows(3, 20.0)))
    await asyncio.sleep(0)
    model.gate.set()
    r1, r2, r3 = await asyncio.gather(first, second, third)

    assert isinstance(r2, BatchResult)
    assert (r1.batch_size, r1.batch_requests) == (1, 1)
    assert (r2.batch_size, r2.batch_requests) == (5, 2)
    assert r2.batch_id == r3.batch_id != r1.batch_id
    assert r2.queue_wait_s > 0 and r3.queue_wait_s > 0
    assert_own_rows(rows(3, 20.0), r3.outputs)


async def test_max_batch_size_is_respected(make, model: Model) -> None:
    # The burst does not fit one batch; what is left over flushes at once, not after the delay.
    batcher = make(max_batch_size=4, max_queue_delay_s=NEVER_S)
    inputs = [rows(n, 100.0 * i) for i, n in enumerate([3, 2, 1, 4, 2, 2])]
    outs = await asyncio.wait_for(asyncio.gather(*(batcher.submit(x) for x in inputs)), GUARD_S)
    for x, out in zip(inputs, outs, strict=True):
        assert_own_rows(x, out)
    assert all(size <= 4 for size in model.sizes)
    assert sum(model.sizes) == 14


async def test_oversized_request_runs_alone(make, model: Model) -> None:
    batcher = make(max_batch_size=4)
    big, small = rows(10, 0.0), rows(1, 500.0)
    out_big, out_small = await asyncio.gather(batcher.submit(big), batcher.submit(small))
    assert_own_rows(big, out_big)
    assert_own_rows(small, out_small)
    assert model.sizes == [10, 1]


async def test_requests_of_different_widths_do_not_share_a_batch(make, model: Model) -> None:
    batcher = make()
    narrow, wide = rows(2, 0.0, width=3), rows(2, 100.0, width=5)
    out_n, out_w = await asyncio.gather(batcher.submit(narrow), batcher.submit(wide))
    assert_own_rows(narrow, out_n)
    assert_own_rows(wide, out_w)
    assert model.sizes == [2, 2]


async def test_empty_or_scalar_input_is_invalid(make, model: Model) -> None:
    batcher = make()
    with pytest.raises(InvalidInput):
        await batcher.submit(np.zeros((0, 3), dtype=np.float32))
    with pytest.raises(InvalidInput):
        await batcher.submit(np.float32(1.0))  # type: ignore[arg-type]
    assert model.batches == []


# ---- when batches flush -----------------------------------------------------------------------


async def test_lone_request_on_an_idle_batcher_does_not_wait_the_delay(make, model: Model) -> None:
    batcher = make(max_queue_delay_s=NEVER_S)
    out = await asyncio.wait_for(batcher.submit(rows(1, 7.0)), GUARD_S)
    assert_own_rows(rows(1, 7.0), out)
    assert model.sizes == [1]


async def test_back_to_back_requests_do_not_wait_the_delay(make, model: Model) -> None:
    # A caller that submits again as soon as it has its result finds the batcher idle.
    batcher = make(max_queue_delay_s=NEVER_S)
    for i in range(5):
        x = rows(1, 10.0 * i)
        assert_own_rows(x, await asyncio.wait_for(batcher.submit(x), GUARD_S))
    assert model.sizes == [1] * 5


async def test_full_batch_flushes_without_waiting_the_delay(make, model: Model) -> None:
    batcher = make(max_batch_size=4, max_queue_delay_s=NEVER_S)
    model.hold()
    first = await started_task(batcher, rows(1, 0.0))
    await model.wait_started()
    a = await started_task(batcher, rows(2, 10.0))
    b = await started_task(batcher, rows(2, 20.0))
    model.gate.set()
    await asyncio.wait_for(asyncio.gather(first, a, b), GUARD_S)
    assert model.sizes == [1, 4]


async def test_short_deadline_flushes_before_the_max_delay(make, model: Model) -> None:
    # The max delay is 10 s; a request due in 0.5 s that is not part of an idle burst is only
    # served if its deadline forces the flush. The slack absorbs timer jitter on a busy machine.
    batcher = make(max_queue_delay_s=NEVER_S, deadline_slack_s=0.2)
    model.hold()
    first = await started_task(batcher, rows(1, 0.0))
    await model.wait_started()
    relaxed = await started_task(batcher, rows(1, 10.0))
    urgent = await started_task(batcher, rows(2, 20.0), deadline=time.monotonic() + 0.5)
    model.gate.set()

    out = await asyncio.wait_for(urgent, GUARD_S)
    assert_own_rows(rows(2, 20.0), out)
    assert_own_rows(rows(1, 10.0), await relaxed)
    await first
    assert model.sizes == [1, 3]  # the urgent flush carried the relaxed request with it
    assert batcher.stats.expired == 0


async def test_deadline_already_passed_is_refused_without_compute(make, model: Model) -> None:
    batcher = make()
    with pytest.raises(DeadlineExceeded, match="ms"):
        await batcher.submit(rows(1, 3.0), deadline=time.monotonic() - 0.01)
    assert model.batches == []
    assert batcher.stats.expired == 1


async def test_deadline_passing_in_the_queue_drops_it_before_compute(make, model: Model) -> None:
    batcher = make()
    model.hold()
    first = await started_task(batcher, rows(1, 0.0))
    await model.wait_started()
    deadline = time.monotonic() + 0.05
    late = await started_task(batcher, rows(1, 77.0), deadline=deadline)
    on_time = await started_task(batcher, rows(1, 10.0))
    while time.monotonic() <= deadline:  # the running batch holds it past its deadline
        await asyncio.sleep(0.01)
    model.gate.set()

    with pytest.raises(DeadlineExceeded, match="late"):
        await late
    assert_own_rows(rows(1, 10.0), await on_time)
    await first
    assert not model.saw(77.0)
    assert batcher.stats.expired == 1
    assert batcher.queue_depth_rows == 0


# ---- refusals, cancellation, failure ---------------------------------------------------------


async def test_full_queue_refuses_at_once_with_a_retry_hint(make, model: Model) -> None:
    batcher = make(max_queue_size=4)
    model.hold()
    first = await started_task(batcher, rows(1, 0.0))
    await model.wait_started()
    queued = await started_task(batcher, rows(3, 10.0))
    with pytest.raises(ResourceExhausted) as refused:
        await batcher.submit(rows(2, 20.0))
    assert refused.value.retry_after_s is not None and refused.value.retry_after_s > 0
    assert batcher.stats.rejected == 1
    model.gate.set()
    await asyncio.gather(first, queued)
    assert not model.saw(20.0)


async def test_request_larger_than_the_queue_is_admitted_when_the_queue_is_empty(
    make, model: Model
) -> None:
    batcher = make(max_queue_size=4, max_batch_size=2)
    big = rows(6, 0.0)
    assert_own_rows(big, await batcher.submit(big))
    assert model.sizes == [6]


async def test_cancelled_while_queued_is_never_computed(make, model: Model) -> None:
    batcher = make()
    model.hold()
    first = await started_task(batcher, rows(1, 0.0))
    await model.wait_started()
    doomed = await started_task(batcher, rows(4, 99.0))
    kept = await started_task(batcher, rows(1, 10.0))
    assert batcher.queue_depth_rows == 5
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    assert batcher.queue_depth_rows == 1
    model.gate.set()

    assert_own_rows(rows(1, 10.0), await kept)
    await first
    assert not model.saw(99.0)
    assert batcher.stats.cancelled == 1


async def test_cancelled_while_running_discards_only_that_result(make, model: Model) -> None:
    batcher = make()
    model.hold()
    doomed = await started_task(batcher, rows(1, 0.0))
    await model.wait_started()
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    model.gate.set()
    assert_own_rows(rows(1, 5.0), await batcher.submit(rows(1, 5.0)))
    assert batcher.stats.cancelled == 1


async def test_failed_batch_fails_each_caller_and_the_next_batch_runs(make, model: Model) -> None:
    batcher = make()
    model.fail_on = 13.0
    results = await asyncio.gather(
        batcher.submit(rows(1, 13.0)),
        batcher.submit(rows(2, 30.0)),
        batcher.submit(rows(1, 40.0)),
        return_exceptions=True,
    )
    assert model.sizes == [4]
    assert all(isinstance(r, ValueError) and "blew up" in str(r) for r in results)
    assert_own_rows(rows(2, 50.0), await batcher.submit(rows(2, 50.0)))
    assert batcher.stats.failed_batches == 1


# ---- close ------------------------------------------------------------------------------------


async def test_close_finishes_queued_work_and_refuses_new_submits(make, model: Model) -> None:
    batcher = make(max_queue_delay_s=NEVER_S)
    model.hold()
    first = await started_task(batcher, rows(1, 0.0))
    await model.wait_started()
    queued = await started_task(batcher, rows(2, 10.0))
    closing = asyncio.create_task(batcher.close())
    await asyncio.sleep(0)
    with pytest.raises(Unavailable):
        await batcher.submit(rows(1, 20.0))
    model.gate.set()

    await asyncio.wait_for(closing, GUARD_S)
    assert_own_rows(rows(2, 10.0), await queued)
    await first
    assert model.sizes == [1, 2]
    await batcher.close()  # idempotent


async def test_close_leaves_a_callers_executor_running(model: Model) -> None:
    with ThreadPoolExecutor(max_workers=1) as pool:
        batcher = DynamicBatcher(
            model, max_batch_size=8, max_queue_delay_s=0.001, max_queue_size=64, executor=pool
        )
        await batcher.submit(rows(1, 0.0))
        await batcher.close()
        assert pool.submit(lambda: 42).result(timeout=GUARD_S) == 42


# ---- configuration ----------------------------------------------------------------------------


def test_config_defaults_when_the_table_is_absent() -> None:
    config = BatchingConfig.from_config({"name": "lead_scorer"})
    assert config == BatchingConfig(
        max_batch_size=1024, max_queue_delay_us=500, max_queue_size=4096
    )
    assert config.max_queue_delay_s == pytest.approx(0.0005)


def test_config_reads_the_batching_table() -> None:
    config = BatchingConfig.from_config(
        {"batching": {"max_batch_size": 32, "max_queue_delay_us": 2000, "max_queue_size": 256}}
    )
    assert (config.max_batch_size, config.max_queue_delay_us, config.max_queue_size) == (
        32,
        2000,
        256,
    )
    assert BatchingConfig.from_table({"max_batch_size": 8}).max_batch_size == 8
    # The table itself, or the whole file around it: either form reads the same.
    assert BatchingConfig.from_config({"max_queue_size": 9}).max_queue_size == 9


def test_config_refuses_batching_keys_outside_the_table() -> None:
    with pytest.raises(ValueError, match=r"\[batching\]"):
        BatchingConfig.from_config({"name": "lead_scorer", "max_batch_size": 8})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("max_batch_size", 0),
        ("max_batch_size", -4),
        ("max_queue_delay_us", 1.5),
        ("max_queue_size", "4096"),
        ("max_queue_size", True),
    ],
)
def test_config_rejects_non_positive_or_non_integer_values(key: str, value: object) -> None:
    with pytest.raises(ValueError, match=key):
        BatchingConfig.from_table({key: value})


def test_config_rejects_unknown_keys_and_non_tables() -> None:
    with pytest.raises(ValueError, match="max_queue_delay_ms"):
        BatchingConfig.from_table({"max_queue_delay_ms": 1})
    with pytest.raises(ValueError, match="batching"):
        BatchingConfig.from_config({"batching": 5})


async def test_batcher_from_config(model: Model) -> None:
    config = BatchingConfig(max_batch_size=2, max_queue_delay_us=100, max_queue_size=8)
    batcher = DynamicBatcher.from_config(model, config, name="m/1")
    try:
        outs = await asyncio.gather(*(batcher.submit(rows(1, 10.0 * i)) for i in range(3)))
        assert model.sizes == [2, 1]
        assert_own_rows(rows(1, 20.0), outs[2])
    finally:
        await batcher.close()
