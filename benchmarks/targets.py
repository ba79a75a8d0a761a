"""What a benchmark drives: the ``Target`` interface and the gRPC targets built on it.

A target is a name, a preflight (one real request, checked, before any load) and an async request
factory (``open``) that each load-generator process calls inside its own event loop. Targets are
pickled into those processes, so they hold plain data: addresses and pre-serialised requests.
"""

from __future__ import annotations

import asyncio
import itertools
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Protocol

import grpc

# Large enough for a batch of thousands of leads; grpc's default receive limit is 4 MiB.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
CHANNEL_OPTIONS = (
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # Separate channels must open separate connections, or "several channels" means one socket.
    ("grpc.use_local_subchannel_pool", 1),
)


class TargetError(Exception):
    """A target cannot be benchmarked; the message is one line meant for the user."""


class Sender(Protocol):
    """Sends one request; raises ``grpc.aio.AioRpcError`` (or any exception) when it fails."""

    async def __call__(self) -> None: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Preflight:
    """What one checked request showed about a target."""

    request_bytes: int
    response_bytes: int
    detail: str = ""
    sample: bytes = field(default=b"", repr=False)  # the response itself, where there is one


class Target(ABC):
    """Something to send load to. Subclasses are picklable dataclasses."""

    name: str
    rows_per_request: int
    # The process that does the serving, for server CPU; None when there is none to measure.
    server_pid: int | None = None
    # In-process targets run in one generator process: more would mean more "servers".
    in_process: bool = False

    @abstractmethod
    async def preflight(self, timeout_s: float) -> Preflight:
        """Send one request and check its answer; raise ``TargetError`` with a one-line reason."""

    @abstractmethod
    async def open(self, channels: int, connect_timeout_s: float) -> Sender:
        """Open connections inside the calling event loop and return the request factory."""


@dataclass(slots=True)
class _RawUnarySender:
    """Round-robins pre-serialised requests over several channels; responses stay unparsed."""

    channels: list[grpc.aio.Channel]
    calls: list[grpc.aio.UnaryUnaryMultiCallable]
    payloads: tuple[bytes, ...]
    timeout_s: float
    metadata: tuple[tuple[str, str], ...] | None = None
    _next_call: itertools.cycle = field(init=False)
    _next_payload: itertools.cycle = field(init=False)

    def __post_init__(self) -> None:
        self._next_call = itertools.cycle(self.calls)
        self._next_payload = itertools.cycle(self.payloads)

    async def __call__(self) -> None:
        await next(self._next_call)(
            next(self._next_payload), timeout=self.timeout_s, metadata=self.metadata
        )

    async def aclose(self) -> None:
        await asyncio.gather(*(channel.close() for channel in self.channels))


@dataclass
class GrpcUnaryTarget(Target):
    """A unary gRPC method at ``address``, sent raw bytes so the client does no serialising."""

    name: str
    address: str
    method: str
    payloads: tuple[bytes, ...]
    rows_per_request: int
    timeout_s: float = 5.0
    server_pid: int | None = None
    in_process: bool = False
    # Sent with every call, e.g. the tenant's API key: (("authorization", "Bearer ..."),).
    metadata: tuple[tuple[str, str], ...] = ()

    async def open(self, channels: int, connect_timeout_s: float) -> Sender:
        opened = [
            grpc.aio.insecure_channel(self.address, options=CHANNEL_OPTIONS)
            for _ in range(max(1, channels))
        ]
        try:
            await asyncio.wait_for(
                asyncio.gather(*(c.channel_ready() for c in opened)), connect_timeout_s
            )
        except TimeoutError:
            await asyncio.gather(*(c.close() for c in opened))
            raise TargetError(
                f"{self.name}: cannot connect to {self.address} within {connect_timeout_s:g} s"
            ) from None
        calls = [c.unary_unary(self.method) for c in opened]
        return _RawUnarySender(opened, calls, self.payloads, self.timeout_s, self.metadata or None)

    async def preflight(self, timeout_s: float) -> Preflight:
        async with grpc.aio.insecure_channel(self.address, options=CHANNEL_OPTIONS) as channel:
            try:
                await asyncio.wait_for(channel.channel_ready(), timeout_s)
            except TimeoutError:
                raise TargetError(
                    f"{self.name}: cannot connect to {self.address} within {timeout_s:g} s"
                ) from None
            try:
                response = await channel.unary_unary(self.method)(
                    self.payloads[0], timeout=timeout_s, metadata=self.metadata or None
                )
            except grpc.aio.AioRpcError as exc:
                raise TargetError(
                    f"{self.name}: {self.address} refused the preflight request: "
                    f"{exc.code().name}: {_one_line(exc.details())}"
                ) from None
        detail = self.check_response(response)
        return Preflight(len(self.payloads[0]), len(response), detail, response)

    def check_response(self, response: bytes) -> str:
        """Parse one response, raise ``TargetError`` if it is wrong, return a short summary."""
        return f"{len(response)} bytes"


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())[:300]
