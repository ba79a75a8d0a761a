"""The one place where domain errors become gRPC statuses.

Domain errors (``runtimes.errors``) name their status; anything else is a bug: the client gets
``INTERNAL`` with a fixed message and the traceback goes to the log, never to the client.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from runtimes.errors import LeadgwError, ResourceExhausted

log = logging.getLogger(__name__)

INTERNAL_MESSAGE = "internal error; the server log has the details"
RETRY_AFTER_KEY = "retry-after-ms"


def status_of(error: LeadgwError) -> grpc.StatusCode:
    return grpc.StatusCode[error.status]


def trailers_of(error: LeadgwError) -> tuple[tuple[str, str], ...]:
    if isinstance(error, ResourceExhausted) and error.retry_after_s is not None:
        return ((RETRY_AFTER_KEY, str(max(1, round(error.retry_after_s * 1000)))),)
    return ()


async def abort_with(context: grpc.aio.ServicerContext, error: BaseException, method: str) -> None:
    """Aborts the RPC with the status the error calls for. Always raises."""
    if isinstance(error, LeadgwError):
        await context.abort(status_of(error), error.message, trailers_of(error))
    log.error("unexpected error in %s", method, exc_info=error)
    await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)


def wrap_unary(
    behavior: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]], method: str
) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]:
    async def mapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await behavior(request, context)
        except (LeadgwError, Exception) as error:
            if _is_grpc_abort(error):
                raise
            await abort_with(context, error, method)

    return mapped


def wrap_stream(
    behavior: Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any]], method: str
) -> Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any]]:
    async def mapped(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            async for response in behavior(request, context):
                yield response
        except (LeadgwError, Exception) as error:
            if _is_grpc_abort(error):
                raise
            await abort_with(context, error, method)

    return mapped


def _is_grpc_abort(error: BaseException) -> bool:
    # context.abort() raises grpc.aio.AbortError; it and grpc's own errors pass untouched.
    return isinstance(error, grpc.aio.AbortError | grpc.RpcError)
