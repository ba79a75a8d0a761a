"""What the batcher tests share: a recording batch function, row makers, and a factory of
batchers that closes every batcher it made."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable

import numpy as np

from runtimes.batcher import DynamicBatcher

# Long enough that a test would hang (and fail on its own guard) if it ever waited it out.
NEVER_S = 10.0
GUARD_S = 5.0


class Model:
    """A row-dependent batch function that records its batches and can be held on a gate."""

    def __init__(self) -> None:
        self.batches: list[np.ndarray] = []
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()
        self.fail_on: float | None = None

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        self.batches.append(x.copy())
        self.started.set()
        self.gate.wait(GUARD_S * 2)
        if self.fail_on is not None and np.any(x == self.fail_on):
            raise ValueError("model blew up")
        return {"sum": x.sum(axis=1), "double": x * 2}

    def hold(self) -> None:
        self.gate.clear()
        self.started.clear()

    async def wait_started(self) -> None:
        assert await asyncio.to_thread(self.started.wait, GUARD_S)

    @property
    def sizes(self) -> list[int]:
        return [len(b) for b in self.batches]

    def saw(self, value: float) -> bool:
        return any(np.any(b == value) for b in self.batches)


@contextlib.asynccontextmanager
async def batcher_factory(model: Model) -> AsyncIterator[Callable[..., DynamicBatcher]]:
    """``factory(**options)`` makes a batcher over ``model`` (small test defaults, overridden by
    ``options``); on exit the gate opens and every batcher made is closed."""
    made: list[DynamicBatcher] = []

    def factory(**kwargs: object) -> DynamicBatcher:
        options: dict = {"max_batch_size": 64, "max_queue_delay_s": 0.001, "max_queue_size": 1024}
        options.update(kwargs)
        batcher = DynamicBatcher(model, name="lead_scorer/1", **options)
        made.append(batcher)
        return batcher

    try:
        yield factory
    finally:
        model.gate.set()
        for batcher in made:
            await batcher.close()


def rows(n: int, start: float, width: int = 3) -> np.ndarray:
    """``n`` distinct rows whose values begin at ``start``, so every row sum is unique."""
    return (start + np.arange(n * width, dtype=np.float32)).reshape(n, width)


async def started_task(batcher: DynamicBatcher, x: np.ndarray, **kw: object) -> asyncio.Task:
    """Submits in a task and lets it reach the queue."""
    task = asyncio.create_task(batcher.submit(x, **kw))
    await asyncio.sleep(0)
    return task


def assert_own_rows(x: np.ndarray, out: dict[str, np.ndarray]) -> None:
    np.testing.assert_array_equal(out["sum"], x.sum(axis=1))
    np.testing.assert_array_equal(out["double"], x * 2)
