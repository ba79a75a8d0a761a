"""One loaded model version: its config, feature schema, ONNX session, batcher, and the count of
calls running on it, so that a version replaced by another is unloaded only after its last call.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
from opentelemetry import trace

from runtimes.model_config import ModelConfig
from runtimes.schema import FeatureSchema
from runtimes.session import OnnxSession
from runtimes.tracing import record_batch_stats, record_queue_wait_span

# The batcher's tracer: the queue-wait span belongs with the batch spans.
_TRACER = trace.get_tracer("leadgw.batcher")

S = TypeVar("S")
T = TypeVar("T")

Outputs = dict[str, np.ndarray]
RunModel = Callable[[np.ndarray], Outputs]
"""Runs a version's model on the calling thread."""

LeadKeys = Callable[[], tuple[str, Sequence[str]]]
"""A call's tenant and the lead id of each row, asked for only when a shadow samples a share
of the leads (so a call whose copy is taken whole builds no list of ids)."""


class _CallerLeft(Exception):
    """A one-hop call whose caller went away before its turn on the thread (never seen by
    anyone: ``asyncio.shield`` retrieves it)."""


class CallObserver(Protocol):
    """Sees a live version's input and outputs after each call (shadow scoring). ``observe`` runs
    on the request path: it must only take a copy and return."""

    def observe(
        self, features: np.ndarray, outputs: dict[str, np.ndarray], keys: LeadKeys | None
    ) -> None: ...


class ServedModel:
    """One loaded model version: its config, feature schema, session and batcher."""

    def __init__(
        self, name: str, version: str, path: Path, config: ModelConfig, session: OnnxSession
    ) -> None:
        self.name = name
        self.version = version
        self.path = path
        self.config = config
        self.session = session
        self.schema = FeatureSchema.from_config(config.raw)
        if self.schema.width != session.width:
            raise ValueError(
                f"{path}: schema has {self.schema.width} features, graph input has {session.width}"
            )
        self.base_value = float(session.metadata.get("base_value", "0"))
        self.fingerprint = ""
        """What the repository compares to see that the files of this version changed."""
        self.after_call: CallObserver | None = None
        """Set by the repository while this version is live and another shadows it."""
        self.last_call = 0.0
        """``time.monotonic()`` of the last call that started: is traffic flowing?"""
        self._batcher: Any = None
        self._on_close: list[Callable[[], None]] = []
        self._in_flight = 0
        self._idle: asyncio.Event | None = None
        self._closed = False

    @property
    def width(self) -> int:
        return self.session.width

    @property
    def in_flight(self) -> int:
        """Calls running on this version right now."""
        return self._in_flight

    def attach_batcher(self, make_batcher: Callable[[ServedModel], Any]) -> None:
        self._batcher = make_batcher(self)

    def on_close(self, callback: Callable[[], None]) -> None:
        """``callback`` runs when the version is unloaded (e.g. to drop its gauges)."""
        self._on_close.append(callback)

    async def infer(
        self,
        features: np.ndarray,
        deadline: float | None = None,
        keys: LeadKeys | None = None,
    ) -> dict[str, np.ndarray]:
        """Runs the model on float32 [rows, width]; batched with concurrent callers when enabled.
        ``keys``: the tenant and lead ids of the rows, for a shadow that samples leads."""
        if self._closed:
            # A call that picked this version just before it was replaced, and reached the model
            # after its batcher closed: the session lives as long as the call holds it.
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(None, self.session.run, features)
        self._in_flight += 1
        self.last_call = time.monotonic()
        try:
            # An idle batcher runs a small call at once, without a coroutine to await.
            batcher = self._batcher
            outputs = None if batcher is None else batcher.run_now(features, deadline)
            if outputs is None:
                outputs = await self._run(features, deadline)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0 and self._idle is not None:
                self._idle.set()
        observer = self.after_call
        if observer is not None:
            observer.observe(features, outputs, keys)
        return outputs

    async def infer_in(
        self,
        executor: Executor,
        prepare: Callable[[], tuple[S, np.ndarray]],
        finish: Callable[[S, Outputs], T],
        *,
        rows: int,
        deadline: float | None = None,
        keys: LeadKeys | None = None,
    ) -> T:
        """A request whose conversion runs on ``executor``'s thread (in this task's context):
        ``prepare()`` gives its state and input matrix of ``rows`` rows, ``finish(state,
        outputs)`` its answer. A request that fills more than half a batch (no other as big could
        share its batch) also runs its model on that thread, in the same hop; a smaller one goes
        through the batcher between two hops, to share a batch with others. The call is counted,
        drained and shadowed as ``infer``'s are."""
        loop = asyncio.get_running_loop()
        batcher = self._batcher
        if batcher is not None and not self._closed and 2 * rows <= batcher.max_batch_size:
            state, features = await loop.run_in_executor(
                executor, contextvars.copy_context().run, prepare
            )
            outputs = await self.infer(features, deadline, keys)
            return await loop.run_in_executor(
                executor, contextvars.copy_context().run, finish, state, outputs
            )

        def job(run: RunModel) -> T:
            state, features = prepare()
            return finish(state, run(features))

        return await self._one_hop(executor, job, rows, deadline, keys)

    async def _one_hop(
        self,
        executor: Executor,
        job: Callable[[RunModel], T],
        rows: int,
        deadline: float | None,
        keys: LeadKeys | None,
    ) -> T:
        """``job(run)`` on ``executor``'s thread, where ``run(features)`` runs the model right
        there (see ``DynamicBatcher.admit_off_queue``)."""
        batcher = self._batcher
        off_queue = None
        counted = not self._closed  # a closed version's late call runs uncounted, as in infer
        if counted:
            if batcher is not None:
                off_queue = batcher.admit_off_queue(rows, deadline)
            self._in_flight += 1
            self.last_call = time.monotonic()
        ran: list[tuple[np.ndarray, Outputs]] = []

        def run(features: np.ndarray) -> Outputs:
            if off_queue is not None:
                outputs = batcher.run_off_queue(off_queue, features)
            else:
                outputs = self.session.run(features)
            ran.append((features, outputs))
            return outputs

        def settle(_: object = None) -> None:
            # On the loop, once the thread is done with the session (even for a caller that
            # went away: a version retiring must not close it under a running model).
            if off_queue is not None:
                batcher.settle_off_queue(off_queue)
            if counted:
                self._in_flight -= 1
                if self._in_flight == 0 and self._idle is not None:
                    self._idle.set()

        caller_left = threading.Event()

        def job_unless_left() -> T:
            if caller_left.is_set():  # it left while this waited for the thread: skip the work
                raise _CallerLeft
            return job(run)

        loop = asyncio.get_running_loop()
        work = loop.run_in_executor(executor, contextvars.copy_context().run, job_unless_left)
        try:
            result = await asyncio.shield(work)
        except asyncio.CancelledError:
            caller_left.set()
            if off_queue is not None:
                batcher.cancel_off_queue(off_queue)
            work.add_done_callback(settle)
            raise
        except BaseException:
            settle()
            raise
        settle()
        if off_queue is not None:
            record_batch_stats(
                trace.get_current_span(),
                queue_wait_s=off_queue.started - off_queue.arrived,
                batch_size=off_queue.rows,
                batch_id=off_queue.batch_id,
            )
        observer = self.after_call
        if observer is not None and ran:
            observer.observe(*ran[0], keys)
        return result

    async def _run(self, features: np.ndarray, deadline: float | None) -> dict[str, np.ndarray]:
        if self._batcher is not None:
            result = await self._batcher.submit_with_stats(features, deadline=deadline)
            span = trace.get_current_span()
            if span.is_recording():
                record_batch_stats(
                    span,
                    queue_wait_s=result.queue_wait_s,
                    batch_size=result.batch_size,
                    batch_id=result.batch_id,
                    batch_context=result.batch_span_context,
                )
                if result.queued:
                    record_queue_wait_span(
                        _TRACER,
                        arrived=result.started - result.queue_wait_s,
                        started=result.started,
                        batch_id=result.batch_id,
                    )
            return result.outputs
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.session.run, features)

    async def retire(self) -> None:
        """Unloads once the last running call has finished. The caller has already taken this
        version out of routing, so no new call starts on it."""
        self.after_call = None
        while self._in_flight:
            self._idle = asyncio.Event()
            await self._idle.wait()
        await self.close()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._batcher is not None:
            await self._batcher.close()
        for callback in self._on_close:
            callback()
