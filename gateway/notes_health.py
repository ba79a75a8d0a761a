"""The health name ``leadgw.notes``: whether the notes store answers.

A probe calls the store's own health check every ``interval_s`` (which also reopens a store
that died). ``leadgw.notes`` turns ``NOT_SERVING`` while the store is down or hung and back to
``SERVING`` once it answers; ``""`` and the API services stay ``SERVING`` throughout, because
scoring never waits on the store. An orchestrator can watch ``leadgw.notes`` to restart a pod
whose store never comes back, without taking scoring down with it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from grpc_health.v1 import health, health_pb2

from runtimes.errors import LeadgwError

NOTES_HEALTH_NAME = "leadgw.notes"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

log = logging.getLogger(__name__)


class NotesHealthProbe:
    def __init__(
        self,
        check: Callable[[], Awaitable[None]] | None,
        servicer: health.aio.HealthServicer,
        *,
        interval_s: float = 1.0,
        timeout_s: float = 2.0,
    ) -> None:
        self._check = check
        self._servicer = servicer
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self.status: int | None = None  # none yet: the first probe's is not a change

    async def start(self) -> None:
        """Sets the first status (NOT_SERVING when notes are off) and starts probing."""
        if self._check is None:
            self.status = NOT_SERVING
            await self._servicer.set(NOTES_HEALTH_NAME, NOT_SERVING)
            return
        await self.probe()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="notes-health")

    async def stop(self) -> None:
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            # A store call may swallow the cancellation (seen when it lands as the probe's own
            # timeout fires): never wait on the task for long; the flag ends its loop anyway.
            await asyncio.wait({self._task}, timeout=self._timeout_s + 1.0)

    async def probe(self) -> None:
        assert self._check is not None
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._check()
        except (LeadgwError, TimeoutError) as exc:
            status, why = NOT_SERVING, str(exc) or "no answer in time"
        else:
            status, why = SERVING, ""
        previous, self.status = self.status, status
        if status == NOT_SERVING and previous != NOT_SERVING:
            log.warning("notes store down: %s NOT_SERVING (%s)", NOTES_HEALTH_NAME, why)
        elif status == SERVING and previous == NOT_SERVING:
            log.info("notes store answers again: %s SERVING", NOTES_HEALTH_NAME)
        await self._servicer.set(NOTES_HEALTH_NAME, status)

    async def _run(self) -> None:
        while not self._stopped:
            await asyncio.sleep(self._interval_s)
            if not self._stopped:
                await self.probe()
