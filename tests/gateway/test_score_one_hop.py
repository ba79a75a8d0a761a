"""A ScoreLeads request that fills most of a batch (more than half of ``max_batch_size`` leads)
runs its model on the conversion thread, in the same hop as its decoding and its answer
(``ServedModel.infer_in``): the batcher still counts it, a shadow still sees it, a retiring
version still waits for it, and a smaller big request still shares batches through the queue.

The gateway runs in this process so the test can watch its batcher; the model is the real one,
wrapped to note the thread each run happens on and to hold a run on a gate.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from leads_helpers import columns_request, sample_leads, score_request

from gateway.server import start
from gateway.settings import Settings
from leadgw_client.pb.leadgw.v1 import lead_service_pb2_grpc as pb_grpc

pytestmark = pytest.mark.timeout(60)

BIG = 600  # > 1,024 / 2: no other request this big could share its batch
MEDIUM = 300  # heavy (off the loop) but small enough to share a batch


class WatchedModel:
    """Wraps the batcher's batch function: notes each run's thread and rows; ``hold`` makes the
    next run wait for ``release``."""

    def __init__(self, batcher) -> None:
        self.runs: list[tuple[str, int]] = []
        self.release = threading.Event()
        self.release.set()
        self.started = threading.Event()
        self._run_batch = batcher._run_batch
        batcher._run_batch = self._run

    def _run(self, inputs: np.ndarray):
        self.runs.append((threading.current_thread().name, int(inputs.shape[0])))
        self.started.set()
        self.release.wait(timeout=30)
        return self._run_batch(inputs)

    def hold(self) -> None:
        self.release.clear()
        self.started.clear()


class Recorder:
    """A shadow's view of live calls (``CallObserver``)."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[int, ...], str, list[str]]] = []

    def observe(self, features, outputs, keys) -> None:
        tenant, ids = keys()
        self.calls.append((features.shape, tenant, list(ids)))


async def until(condition) -> None:
    """Waits (at most 2 s) for ``condition()``, checked between the loop's other work."""
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.01)


@pytest.fixture
async def gateway(tmp_path: Path):
    gateway = await start(Settings(port=0, data_dir=tmp_path, load_demo_corpus=False))
    try:
        yield gateway
    finally:
        await gateway.stop(grace=1, drain=0)


async def test_a_batch_sized_request_runs_its_model_on_the_conversion_thread(gateway) -> None:
    served = gateway.repository.get("lead_scorer")
    batcher = served._batcher
    watched = WatchedModel(batcher)
    shadow = Recorder()
    served.after_call = shadow
    leads = sample_leads(BIG, seed=41)
    before = batcher.stats
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub = pb_grpc.LeadServiceStub(channel)
        by_lead = await stub.ScoreLeads(score_request(leads))
        by_column = await stub.ScoreLeads(columns_request(leads))
    assert len(by_lead.scores) == len(by_column.columns.lead_ids) == BIG
    assert [s.probability for s in by_lead.scores] == list(by_column.columns.probability)
    assert [(name.split("_")[0], n) for name, n in watched.runs] == [("convert", BIG)] * 2
    after = batcher.stats
    assert (after.batches - before.batches, after.rows - before.rows) == (2, 2 * BIG)
    assert batcher._worker is None  # nothing went through the queue
    ids = [lead.lead_id for lead in leads]
    assert shadow.calls == [((BIG, served.width), "default", ids)] * 2


async def test_a_smaller_big_request_still_goes_through_the_queue(gateway) -> None:
    batcher = gateway.repository.get("lead_scorer")._batcher
    watched = WatchedModel(batcher)
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub = pb_grpc.LeadServiceStub(channel)
        await stub.ScoreLeads(columns_request(sample_leads(MEDIUM, seed=42)))
    assert [(name.split("_")[0], n) for name, n in watched.runs] == [("batch-lead", MEDIUM)]


@dataclass
class HeldCall:
    """A BIG column-wise call whose model run has started on the conversion thread and is held
    there until ``watched.release`` is set."""

    served: Any
    watched: WatchedModel
    stub: pb_grpc.LeadServiceStub
    call: Any  # the grpc.aio call, to cancel
    answer: asyncio.Future


@contextlib.asynccontextmanager
async def a_held_big_call(gateway, seed: int) -> AsyncIterator[HeldCall]:
    served = gateway.repository.get("lead_scorer")
    watched = WatchedModel(served._batcher)
    watched.hold()
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub = pb_grpc.LeadServiceStub(channel)
        call = stub.ScoreLeads(columns_request(sample_leads(BIG, seed=seed)))
        answer = asyncio.ensure_future(call)
        assert await asyncio.to_thread(watched.started.wait, 10)
        try:
            yield HeldCall(served, watched, stub, call, answer)
        finally:
            watched.release.set()


async def test_a_retiring_version_waits_for_a_one_hop_call(gateway) -> None:
    async with a_held_big_call(gateway, seed=43) as held:
        served = held.served
        assert served.in_flight == 1
        retiring = asyncio.ensure_future(served.retire())
        await asyncio.sleep(0.05)
        assert not retiring.done()  # the session must outlive the run on the conversion thread
        held.watched.release.set()
        answer = await held.answer
        await asyncio.wait_for(retiring, 10)
    assert len(answer.columns.lead_ids) == BIG
    assert served.in_flight == 0


async def test_a_caller_that_leaves_mid_run_is_counted_until_the_run_ends(gateway) -> None:
    async with a_held_big_call(gateway, seed=44) as held:
        served = held.served
        held.call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await held.answer
        await until(lambda: served._batcher.stats.cancelled == 1)
        assert served._batcher.stats.cancelled == 1  # the server saw the caller go
        assert served.in_flight == 1  # the model is still running on the conversion thread
        before = served._batcher.stats.batches
        held.watched.release.set()
        await until(lambda: served.in_flight == 0)
    assert served.in_flight == 0
    assert served._batcher.stats.batches == before + 1


async def test_a_caller_that_leaves_while_queued_for_the_thread_costs_no_work(gateway) -> None:
    async with a_held_big_call(gateway, seed=45) as held:
        served = held.served
        # The conversion thread is busy with the first: the second waits for it, then leaves.
        second = held.stub.ScoreLeads(columns_request(sample_leads(BIG, seed=46)))
        waiting = asyncio.ensure_future(second)
        await until(lambda: served.in_flight == 2)
        assert served.in_flight == 2
        cancelled = served._batcher.stats.cancelled
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        # Free the thread only once the server has seen the caller go.
        await until(lambda: served._batcher.stats.cancelled == cancelled + 1)
        assert served._batcher.stats.cancelled == cancelled + 1
        held.watched.release.set()
        answer = await held.answer
        await until(lambda: served.in_flight == 0)
    assert len(answer.columns.lead_ids) == BIG
    assert served.in_flight == 0
    assert len(held.watched.runs) == 1  # the second request's model never ran
