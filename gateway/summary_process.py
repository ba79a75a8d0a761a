"""Summaries in a process of their own (``Settings.summary_process``), and the relay to it.

With two or more workers the supervisor starts one more process, at a lower CPU priority, that
serves ``SummarizeLead`` alone on a Unix socket; each worker relays the summaries it receives
there. A summary spends tens of ms of event-loop time (the LLM's chunks, the guard, retrieval,
the prompt): on a worker's loop that time lands between scoring calls, and it was what kept
ScoreLeads' p99 while summaries stream at 1.3-1.5x its p99 alone. In a process of its own the
kernel preempts it whenever a worker has a scoring call to run
(docs/perf/2026-12-02-summary-process.md).

The relay is thin: the request goes up as bytes and the stream's messages come back as bytes,
never parsed by the worker. Errors keep their status and message; a summaries process that
does not answer (restarting, or gone) is UNAVAILABLE, said as such.

Trust: the socket is in a directory only this user may enter (``tempfile.mkdtemp``, 0700), and
the summaries process takes the caller's tenant from the relay's metadata: the worker has
already authenticated the caller, checked its scope and applied its rate limits.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from opentelemetry import propagate

from gateway.auth import SCOPES, Caller, reset_caller, set_caller
from gateway.errors import RETRY_AFTER_KEY, abort_with
from gateway.interceptors import Behavior, Handler, rewrap
from runtimes.errors import (
    DeadlineExceeded,
    LeadgwError,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)

METHOD = "/leadgw.v1.LeadService/SummarizeLead"
RELAYED_TENANT = "leadgw-relayed-tenant"
# Sent first by the summaries process on every call: a failed call that carries it was
# answered there (its status is the summary's own); one without it never reached it.
ANSWERED = ("leadgw-summaries", "answered")
SOCKET_NAME = "summaries.sock"

NOT_ANSWERING = (
    "the summaries process is not answering (it may be restarting); try again shortly. "
    "Scoring is not affected"
)


class RelayedError(LeadgwError):
    """A status the summaries process answered with, passed on as it came."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


class SummaryRelay:
    """A worker's side: ``SummarizeLead`` calls go to the summaries process."""

    def __init__(self, socket_path: str, max_message_bytes: int) -> None:
        self._channel = grpc.aio.insecure_channel(
            f"unix:{socket_path}",
            options=[
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", max_message_bytes),
            ],
        )
        # No serializers: the request goes up as bytes and each answer comes back as bytes.
        self._call = self._channel.unary_stream(METHOD)

    async def summarize(self, request: bytes, tenant: str, deadline: float) -> AsyncIterator[bytes]:
        """The summary's messages as their wire bytes. ``deadline``: a monotonic instant."""
        carrier: dict[str, str] = {}
        propagate.inject(carrier)  # the summaries process's span continues this call's trace
        metadata = ((RELAYED_TENANT, tenant), *carrier.items())
        call = self._call(request, timeout=max(0.0, deadline - time.monotonic()), metadata=metadata)
        try:
            async for message in call:
                yield message
        except grpc.aio.AioRpcError as error:
            raise relayed_error(error, await call.initial_metadata()) from None
        finally:
            call.cancel()  # the client went away: so does the summary (no-op once it ended)

    async def close(self) -> None:
        await self._channel.close()


def relayed_error(error: grpc.aio.AioRpcError, initial_metadata: Any) -> LeadgwError:
    """The domain error a relayed call's failure becomes."""
    answered = ANSWERED in tuple(initial_metadata or ())
    code = error.code()
    if not answered:
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return DeadlineExceeded("the summary's deadline passed before it started")
        return Unavailable(NOT_ANSWERING)
    message = error.details() or ""
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        retry_ms = dict(error.trailing_metadata() or ()).get(RETRY_AFTER_KEY)
        retry_s = int(retry_ms) / 1000 if isinstance(retry_ms, str) and retry_ms.isdigit() else None
        return ResourceExhausted(message, retry_after_s=retry_s)
    return RelayedError(code.name, message)


def relayed_caller(path: str, handler: Handler) -> Handler:
    """The summaries process's stand-in for authentication: the caller is the tenant the worker
    relayed (every scope: the worker checked it). Marks each call answered (``ANSWERED``)."""

    async def caller_of(context: grpc.aio.ServicerContext) -> Caller:
        await context.send_initial_metadata((ANSWERED,))
        for key, value in context.invocation_metadata() or ():
            if key == RELAYED_TENANT and isinstance(value, str):
                return Caller(value, frozenset(SCOPES), "relayed")
        await abort_with(context, Unauthenticated("no relayed tenant"), path)
        raise AssertionError("abort_with raises")  # for the type checker

    def unary(behavior: Behavior) -> Behavior:
        async def relayed(request: Any, context: grpc.aio.ServicerContext) -> Any:
            token = set_caller(await caller_of(context))
            try:
                return await behavior(request, context)
            finally:
                reset_caller(token)

        return relayed

    def stream(behavior: Behavior) -> Behavior:
        async def relayed(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            token = set_caller(await caller_of(context))
            try:
                async for response in behavior(request, context):
                    yield response
            finally:
                reset_caller(token)

        return relayed

    return rewrap(handler, unary, stream)
