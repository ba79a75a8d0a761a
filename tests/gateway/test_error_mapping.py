"""One place maps errors: domain errors keep their status (and retry hint); anything else is
INTERNAL with a fixed message, never a leaked stack. A real grpc.aio server on port 0, with a
test service registered through ``wrapped_registration`` as the gateway registers its own."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from gateway.errors import INTERNAL_MESSAGE, RETRY_AFTER_KEY
from gateway.interceptors import (
    authentication,
    chain,
    error_mapping,
    request_decoding,
    wrapped_registration,
)
from runtimes.errors import DeadlineExceeded, InvalidInput, NotFound, ResourceExhausted

RAISES = {
    "invalid": InvalidInput("lead 'x': feature 'age' is 250, outside [18, 100]"),
    "missing": NotFound("model 'nope' is not loaded"),
    "full": ResourceExhausted("queue is full", retry_after_s=0.25),
    "late": DeadlineExceeded("dropped before compute"),
    "bug": KeyError("secret internal detail"),
}


async def _unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    raise RAISES[request.decode()]


async def _stream(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    yield b"first"
    raise RAISES[request.decode()]


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    server = grpc.aio.server()
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(_unary, request_deserializer=bytes),
        "Stream": grpc.unary_stream_rpc_method_handler(_stream, request_deserializer=bytes),
    }
    # The production order, without tracing: no keys file, so every caller is tenant default.
    wrapped = wrapped_registration(
        server, chain(authentication(None), error_mapping, request_decoding)
    )
    wrapped.add_registered_method_handlers("test.Errors", handlers)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as open_channel:
        yield open_channel
    await server.stop(None)


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("invalid", grpc.StatusCode.INVALID_ARGUMENT),
        ("missing", grpc.StatusCode.NOT_FOUND),
        ("full", grpc.StatusCode.RESOURCE_EXHAUSTED),
        ("late", grpc.StatusCode.DEADLINE_EXCEEDED),
        ("bug", grpc.StatusCode.INTERNAL),
    ],
)
async def test_unary_and_streaming_errors_map_in_one_place(
    channel: grpc.aio.Channel, case: str, status: grpc.StatusCode
) -> None:
    unary = channel.unary_unary("/test.Errors/Unary")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await unary(case.encode())
    assert caught.value.code() == status
    if case == "bug":
        assert caught.value.details() == INTERNAL_MESSAGE
        assert "secret" not in caught.value.details()
    else:
        assert caught.value.details() == RAISES[case].message

    stream = channel.unary_stream("/test.Errors/Stream")
    call = stream(case.encode())
    assert await call.read() == b"first"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert caught.value.code() == status


async def test_queue_full_carries_a_retry_hint(channel: grpc.aio.Channel) -> None:
    unary = channel.unary_unary("/test.Errors/Unary")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await unary(b"full")
    trailers = dict(caught.value.trailing_metadata() or ())
    assert trailers[RETRY_AFTER_KEY] == "250"
