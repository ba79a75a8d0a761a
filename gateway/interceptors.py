"""Server interceptors, outermost first: auth → (tracing) → error mapping.

Each wraps a method's handler once and caches it, so the per-RPC cost is a dict lookup.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from gateway.auth import ANONYMOUS, Caller, KeyStore, reset_caller, set_caller
from gateway.errors import abort_with, wrap_stream, wrap_unary
from runtimes.errors import LeadgwError

# Which scope each method needs; methods not listed need only a valid key.
METHOD_SCOPES = {
    "/leadgw.v1.LeadService/ScoreLeads": "score",
    "/leadgw.v1.LeadService/SummarizeLead": "summarize",
    "/leadgw.v1.LeadService/SearchNotes": "summarize",
    "/leadgw.v1.LeadService/IndexNotes": "index",
    "/leadgw.v1.LeadService/DeleteNotes": "index",
    "/inference.GRPCInferenceService/ModelInfer": "score",
    "/inference.GRPCInferenceService/RepositoryIndex": "admin",
}
# Standard services every orchestrator probes without credentials.
OPEN_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")

Handler = grpc.RpcMethodHandler
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]]


def _rewrap(handler: Handler, wrap_u: Any, wrap_s: Any) -> Handler:
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            wrap_u(handler.unary_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            wrap_s(handler.unary_stream),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return handler  # client- and bidi-streaming: leadgw serves none


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):
    """Domain errors → their status; unexpected errors → INTERNAL with a fixed message."""

    def __init__(self) -> None:
        self._cache: dict[str, Handler] = {}

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        method = handler_call_details.method
        cached = self._cache.get(method)
        if cached is not None:
            return cached
        handler = await continuation(handler_call_details)
        if handler is None or method.startswith(OPEN_PREFIXES):
            return handler
        wrapped = _rewrap(
            handler, lambda b: wrap_unary(b, method), lambda b: wrap_stream(b, method)
        )
        self._cache[method] = wrapped
        return wrapped


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates every call but health and reflection, and checks the method's scope.

    With no key store (loopback only, no keys file) every caller is tenant ``default``.
    """

    def __init__(self, keys: KeyStore | None) -> None:
        self._keys = keys
        self._cache: dict[str, Handler] = {}

    def _caller(self, context: grpc.aio.ServicerContext, method: str) -> Caller:
        caller = (
            ANONYMOUS
            if self._keys is None
            else self._keys.authenticate(context.invocation_metadata())
        )
        scope = METHOD_SCOPES.get(method)
        if scope is not None:
            caller.require(scope, method.rsplit("/", 1)[-1])
        return caller

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        method = handler_call_details.method
        cached = self._cache.get(method)
        if cached is not None:
            return cached
        handler = await continuation(handler_call_details)
        if handler is None or method.startswith(OPEN_PREFIXES):
            return handler

        def wrap_u(behavior: Any) -> Any:
            async def authed(request: Any, context: grpc.aio.ServicerContext) -> Any:
                try:
                    caller = self._caller(context, method)
                except LeadgwError as error:
                    await abort_with(context, error, method)
                token = set_caller(caller)
                try:
                    return await behavior(request, context)
                finally:
                    reset_caller(token)

            return authed

        def wrap_s(behavior: Any) -> Any:
            async def authed(request: Any, context: grpc.aio.ServicerContext) -> Any:
                try:
                    caller = self._caller(context, method)
                except LeadgwError as error:
                    await abort_with(context, error, method)
                token = set_caller(caller)
                try:
                    async for response in behavior(request, context):
                        yield response
                finally:
                    reset_caller(token)

            return authed

        wrapped = _rewrap(handler, wrap_u, wrap_s)
        self._cache[method] = wrapped
        return wrapped
