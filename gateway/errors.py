"""The one place where domain errors become gRPC statuses.

Domain errors (``runtimes.errors``) name their status; anything else is a bug: the client gets
``INTERNAL`` with a fixed message and the traceback goes to the log, never to the client.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from runtimes.errors import LeadgwError, ResourceExhausted

log = logging.getLogger(__name__)

INTERNAL_MESSAGE = "internal error; the server log has the details"
# A status message travels percent-encoded in a header, and grpc clients refuse headers past
# 8 KiB (sometimes) or 16 KiB (always), turning the status into RESOURCE_EXHAUSTED: messages
# quote what clients sent cut short (``runtimes.errors.shown``), and this bounds the rest.
MAX_MESSAGE_BYTES = 1024
RETRY_AFTER_KEY = "retry-after-ms"


def status_of(error: LeadgwError) -> grpc.StatusCode:
    return grpc.StatusCode[error.status]


Trailers = tuple[tuple[str, str | bytes], ...]


def trailers_of(error: LeadgwError) -> Trailers:
    """A retry delay goes out twice: as the standard ``google.rpc.RetryInfo`` status detail
    (``grpc-status-details-bin``, read by gRPC clients' retry support and ``grpc_status``), and
    as the older ``retry-after-ms`` trailer, deprecated, kept for one release."""
    if isinstance(error, ResourceExhausted) and error.retry_after_s is not None:
        return retry_trailers(error.message, max(1, round(error.retry_after_s * 1000)))
    return ()


def retry_trailers(message: str, retry_ms: int) -> Trailers:
    """The trailers of a RESOURCE_EXHAUSTED refusal with ``message`` that a retry after
    ``retry_ms`` would pass (see ``trailers_of``)."""
    retry_info = error_details_pb2.RetryInfo()
    retry_info.retry_delay.FromMilliseconds(retry_ms)
    detail = any_pb2.Any()
    detail.Pack(retry_info)
    status = status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message=message, details=[detail])
    return (*rpc_status.to_status(status).trailing_metadata, (RETRY_AFTER_KEY, str(retry_ms)))


async def abort_with(context: grpc.aio.ServicerContext, error: BaseException, method: str) -> None:
    """Aborts the RPC with the status the error calls for. Always raises."""
    if isinstance(error, LeadgwError):
        await context.abort(status_of(error), _bounded(error.message), trailers_of(error))
    log.error("unexpected error in %s", method, exc_info=error)
    await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)


def _bounded(message: str) -> str:
    data = message.encode()
    if len(data) <= MAX_MESSAGE_BYTES:
        return message
    return data[:MAX_MESSAGE_BYTES].decode(errors="ignore") + " [message cut]"


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
