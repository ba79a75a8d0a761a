"""What runs around every leadgw RPC, outermost first: admission (``gateway.draining``) → auth →
the calls/s limit → tracing → error mapping → request decoding → the leads/s limit (the limits
are in ``gateway.rate_limits``).

Each layer is a *handler wrapper*: given a method's path and handler, it returns a new handler,
once per method at start-up. The server registers its servicers' handlers already wrapped
(``wrapped_registration``), so an RPC pays for a few plain function calls and no gRPC
interceptor machinery (measured: grpc.aio interceptors cost a third of ModelInfer's throughput).
Health and reflection are registered unwrapped: orchestrators probe them without credentials.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeAlias

import grpc
from google.protobuf import descriptor_pool
from google.protobuf.message import DecodeError

from gateway.audit import AuditLog
from gateway.auth import ANONYMOUS, Caller, reset_caller, set_caller
from gateway.errors import abort_with, wrap_stream, wrap_unary
from runtimes.errors import InvalidInput, LeadgwError


class Authenticator(Protocol):
    """A ``KeyStore``, or one that follows its file (``gateway.key_reload``)."""

    def authenticate(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> Caller: ...


# Which scope each method needs; methods not listed need only a valid key.
METHOD_SCOPES = {
    "/leadgw.v1.LeadService/ScoreLeads": "score",
    "/leadgw.v1.LeadService/SummarizeLead": "summarize",
    "/leadgw.v1.LeadService/SearchNotes": "summarize",
    "/leadgw.v1.LeadService/IndexNotes": "index",
    "/leadgw.v1.LeadService/DeleteNotes": "index",
    "/inference.GRPCInferenceService/ModelInfer": "score",
    "/inference.GRPCInferenceService/RepositoryIndex": "admin",
    "/inference.GRPCInferenceService/RepositoryModelLoad": "admin",
    "/inference.GRPCInferenceService/RepositoryModelUnload": "admin",
}

# grpc's handler type is an untyped namedtuple-like class; mypy cannot use it as a type.
Handler: TypeAlias = Any
HandlerWrapper = Callable[[str, Handler], Handler]
Behavior = Callable[[Any, grpc.aio.ServicerContext], Any]


_KEEP: Any = object()


def rewrap(
    handler: Handler,
    wrap_unary_behavior: Callable[[Behavior], Behavior],
    wrap_stream_behavior: Callable[[Behavior], Behavior],
    request_deserializer: Any = _KEEP,
    response_serializer: Any = _KEEP,
) -> Handler:
    """The handler with its behaviour wrapped (unary or server-streaming; others unchanged)."""
    deserializer = (
        handler.request_deserializer if request_deserializer is _KEEP else request_deserializer
    )
    serializer = (
        handler.response_serializer if response_serializer is _KEEP else response_serializer
    )
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            wrap_unary_behavior(handler.unary_unary),
            request_deserializer=deserializer,
            response_serializer=serializer,
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            wrap_stream_behavior(handler.unary_stream),
            request_deserializer=deserializer,
            response_serializer=serializer,
        )
    return handler  # client- and bidi-streaming: leadgw serves none


def error_mapping(path: str, handler: Handler) -> Handler:
    """Domain errors → their status; unexpected errors → INTERNAL with a fixed message."""
    return rewrap(handler, lambda b: wrap_unary(b, path), lambda b: wrap_stream(b, path))


def request_decoding(path: str, handler: Handler) -> Handler:
    """Parses the request inside the handler rather than in grpc's deserializer, so that bytes
    that are no message of the method's type get INVALID_ARGUMENT naming that type: grpc.aio
    answers a deserializer's exception with UNKNOWN and the parser's text. Innermost, inside
    error mapping.

    Its serializer passes through an answer that is already bytes: a servicer may encode an
    answer itself where that is cheaper than building the message (``oip_codec.encode_response``).
    """
    parse = handler.request_deserializer
    if parse is None:
        return handler
    message = _request_message_name(path)
    serialize = handler.response_serializer

    def encode(response: Any) -> bytes:
        return response if response.__class__ is bytes else serialize(response)

    def decode(raw: bytes) -> Any:
        try:
            return parse(raw)
        except DecodeError as error:
            raise InvalidInput(f"request is not a valid {message}: {error}") from None

    def unary(behavior: Behavior) -> Behavior:
        async def decoded(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
            return await behavior(decode(raw), context)

        return decoded

    def stream(behavior: Behavior) -> Behavior:
        async def decoded(raw: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async for response in behavior(decode(raw), context):
                yield response

        return decoded

    return rewrap(
        handler,
        unary,
        stream,
        request_deserializer=None,
        response_serializer=None if serialize is None else encode,
    )


def _request_message_name(path: str) -> str:
    """``/leadgw.v1.LeadService/ScoreLeads`` → ``leadgw.v1.ScoreLeadsRequest``, from the
    generated descriptors; the method path itself for a service they do not describe."""
    service, _, method = path.lstrip("/").rpartition("/")
    try:
        found = descriptor_pool.Default().FindServiceByName(service).methods_by_name[method]
    except KeyError:
        return f"request of {path}"
    return str(found.input_type.full_name)


def authentication(keys: Authenticator | None, audit: AuditLog | None = None) -> HandlerWrapper:
    """Authenticates each call and checks the method's scope; the caller is then current.
    Each decision goes to ``audit``.

    With no key store (loopback only, no keys file) every caller is tenant ``default``.
    """

    def wrap(path: str, handler: Handler) -> Handler:
        scope = METHOD_SCOPES.get(path)
        method = path.rsplit("/", 1)[-1]

        def caller_of(context: grpc.aio.ServicerContext) -> Caller:
            caller = None
            try:
                caller = (
                    ANONYMOUS if keys is None else keys.authenticate(context.invocation_metadata())
                )
                if scope is not None:
                    caller.require(scope, method)
            except LeadgwError as refused:
                if audit is not None:
                    audit.denied(caller, path, context.peer(), refused)
                raise
            if audit is not None:
                audit.allowed(caller, path, context.peer())
            return caller

        def unary(behavior: Behavior) -> Behavior:
            async def authed(request: Any, context: grpc.aio.ServicerContext) -> Any:
                try:
                    caller = caller_of(context)
                except Exception as error:  # outside error mapping: map here, never UNKNOWN
                    await abort_with(context, error, path)
                token = set_caller(caller)
                try:
                    return await behavior(request, context)
                finally:
                    reset_caller(token)

            return authed

        def stream(behavior: Behavior) -> Behavior:
            async def authed(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                try:
                    caller = caller_of(context)
                except Exception as error:  # outside error mapping: map here, never UNKNOWN
                    await abort_with(context, error, path)
                token = set_caller(caller)
                try:
                    async for response in behavior(request, context):
                        yield response
                finally:
                    reset_caller(token)

            return authed

        return rewrap(handler, unary, stream)

    return wrap


def chain(*wrappers: HandlerWrapper) -> HandlerWrapper:
    """One wrapper from several, the first outermost."""

    def wrap(path: str, handler: Handler) -> Handler:
        for wrapper in reversed(wrappers):
            handler = wrapper(path, handler)
        return handler

    return wrap


class _WrappingRegistrar:
    """Stands in for the server while generated ``add_*Servicer_to_server`` code registers a
    servicer: the method handlers it hands over are wrapped, then added to the server as one
    generic handler per service.

    Never as gRPC "registered methods": grpc.aio's accept loop keeps one pending request-call
    task per registered method and, for every call that arrives, runs ``asyncio.wait`` over all
    of them (adding and removing a done-callback on each). With 20 registered methods (the
    gateway had 18) that costs ~11 µs of server CPU per call, for nothing
    (``scripts/registered_methods_cost.py``, docs/perf/2026-11-29-pass4.md): the generic
    handlers find each method by one dict lookup per service."""

    def __init__(self, server: grpc.aio.Server, wrap: HandlerWrapper) -> None:
        self._server = server
        self._wrap = wrap

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        """Ignored: generated code passes the same handlers again, by name, to
        ``add_registered_method_handlers``, where they are wrapped and added."""

    def add_registered_method_handlers(self, service: str, handlers: Mapping[str, Handler]) -> None:
        wrapped = {name: self._wrap(f"/{service}/{name}", h) for name, h in handlers.items()}
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service, wrapped),)
        )


def wrapped_registration(server: grpc.aio.Server, wrap: HandlerWrapper) -> Any:
    """Pass this instead of the server to ``add_*Servicer_to_server``."""
    return _WrappingRegistrar(server, wrap)


def plain_registration(server: grpc.aio.Server) -> Any:
    """``wrapped_registration`` without wrappers: for services served as they are (health,
    reflection), still added as generic handlers only."""
    return _WrappingRegistrar(server, lambda _path, handler: handler)
