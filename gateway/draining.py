"""Admission of calls while the gateway stops: once draining ends, new calls are refused with
``UNAVAILABLE`` (which clients' retry policies retry elsewhere) and the calls already admitted
are counted, so the server is stopped only once they have all been answered.

grpc.aio's ``server.stop(grace)`` cancels whatever is still running at the end of the grace
period, and a call that arrives while it stops ends ``CANCELLED``: neither answered nor refused,
so no retry policy retries it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc

from gateway.interceptors import Behavior, Handler, rewrap

REFUSED_MESSAGE = "the server is shutting down; retry on another replica"


class CallGate:
    """A handler wrapper (outermost) that admits calls while open and counts those in flight."""

    def __init__(self) -> None:
        self._open = True
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def close(self) -> None:
        """From now on every new call is refused with UNAVAILABLE."""
        self._open = False

    async def wait_idle(self, timeout_s: float) -> bool:
        """Waits until no admitted call is running, at most ``timeout_s``; True if none is."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def _enter(self) -> bool:
        if not self._open:
            return False
        self._in_flight += 1
        self._idle.clear()
        return True

    def _leave(self) -> None:
        self._in_flight -= 1
        if self._in_flight == 0:
            self._idle.set()

    def wrap(self, path: str, handler: Handler) -> Handler:
        def unary(behavior: Behavior) -> Behavior:
            async def admitted(request: Any, context: grpc.aio.ServicerContext) -> Any:
                if not self._enter():
                    await context.abort(grpc.StatusCode.UNAVAILABLE, REFUSED_MESSAGE)
                try:
                    return await behavior(request, context)
                finally:
                    self._leave()

            return admitted

        def stream(behavior: Behavior) -> Behavior:
            async def admitted(
                request: Any, context: grpc.aio.ServicerContext
            ) -> AsyncIterator[Any]:
                if not self._enter():
                    await context.abort(grpc.StatusCode.UNAVAILABLE, REFUSED_MESSAGE)
                try:
                    async for response in behavior(request, context):
                        yield response
                finally:
                    self._leave()

            return admitted

        return rewrap(handler, unary, stream)
