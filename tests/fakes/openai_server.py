"""An OpenAI-protocol HTTP server on 127.0.0.1 with scripted replies, for tests.

It speaks the real wire protocol that the ``openai`` client expects: ``POST
/v1/chat/completions`` answered with JSON, or, for ``"stream": true``, with ``text/event-stream``
``data: {chat.completion.chunk}`` lines sent in HTTP/1.1 chunked encoding and ``data: [DONE]``,
the usage in a last chunk when ``stream_options.include_usage`` is set. Faults (errors, cuts,
malformed chunks, silence, slowness) are scripted per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass
class StreamReply:
    """A streamed completion of ``chunks``, with optional faults."""

    chunks: list[str]
    usage: tuple[int, int] | None = (42, 17)
    """(prompt, completion) tokens sent when asked for; None: the server never sends usage."""
    first_delay_s: float = 0.0
    """Pause after the headers and the role chunk, before the first text."""
    gap_s: float = 0.0
    """Pause between text chunks."""
    gate: asyncio.Event | None = None
    """If set, the first text waits for this event (to hold a stream open in a test)."""
    cut_after: int | None = None
    """Drop the connection mid-body after this many text chunks."""
    malformed_after: int | None = None
    """Send ``malformed`` (by default a line that is not JSON) after this many text chunks."""
    malformed: str = '{"id": "chatcmpl-fake", "choices": [{"delta": {"content": "x"'
    """The event data sent at ``malformed_after``: not JSON, or JSON of the wrong shape."""
    finish: bool = True
    """False: end the body cleanly but without a finish reason nor [DONE]."""


@dataclass
class ErrorReply:
    status: int
    message: str = "upstream error"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class SilentReply:
    """Read the request, then say nothing until the server is closed."""


Reply = StreamReply | ErrorReply | SilentReply


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def prompt_text(self) -> str:
        return "\n".join(str(m.get("content", "")) for m in self.body.get("messages", []))


_REASONS = {200: "OK", 429: "Too Many Requests", 500: "Internal Server Error", 503: "Unavailable"}


class FakeOpenAI:
    """Start with ``await FakeOpenAI().start()``; ``base_url`` ends in ``/v1``.

    Replies are taken from the script in order; when it is empty, ``default`` answers.
    """

    def __init__(self, default: Reply | None = None, model: str = "fake-model") -> None:
        self.default: Reply = default or StreamReply(["Hello"])
        self.model = model
        self.requests: list[ReceivedRequest] = []
        self._script: deque[Reply] = deque()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._closed = asyncio.Event()
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def chat_requests(self) -> list[ReceivedRequest]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def script(self, *replies: Reply) -> None:
        self._script.extend(replies)

    async def start(self) -> FakeOpenAI:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def aclose(self) -> None:
        self._closed.set()
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            # Keep-alive: the client may send several requests on one connection.
            while not self._closed.is_set():
                request = await self._read_request(reader)
                if request is None:
                    return
                self.requests.append(request)
                reply = self._script.popleft() if self._script else self.default
                keep_open = await self._answer(request, reply, writer)
                if not keep_open:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._writers.discard(writer)
            self._handlers.discard(task)
            writer.transport.abort()

    async def _read_request(self, reader: asyncio.StreamReader) -> ReceivedRequest | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return None
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        raw = await reader.readexactly(length) if length else b""
        body = json.loads(raw) if raw else {}
        return ReceivedRequest(method, path, headers, body)

    async def _answer(self, request: ReceivedRequest, reply: Reply, writer: Any) -> bool:
        if isinstance(reply, SilentReply):
            await self._closed.wait()
            return False
        if isinstance(reply, ErrorReply):
            payload = {"error": {"message": reply.message, "type": "server_error", "code": None}}
            await _send_json(writer, reply.status, payload, reply.headers)
            return True
        if not request.body.get("stream"):
            await _send_json(writer, 200, self._completion(reply))
            return True
        return await self._stream(request, reply, writer)

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake up when the server closes (tests must not leave sleepers behind)."""
        if seconds > 0:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._closed.wait(), seconds)

    def _completion(self, reply: StreamReply) -> dict[str, Any]:
        prompt, completion = reply.usage or (0, 0)
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 0,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(reply.chunks)},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }

    async def _stream(self, request: ReceivedRequest, reply: StreamReply, writer: Any) -> bool:
        include_usage = bool((request.body.get("stream_options") or {}).get("include_usage"))
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\ncache-control: no-cache\r\n\r\n"
        )

        async def event(data: str) -> None:
            body = f"data: {data}\n\n".encode()
            writer.write(f"{len(body):x}\r\n".encode() + body + b"\r\n")
            await writer.drain()

        def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
            payload: dict[str, Any] = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": self.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            if include_usage:
                payload["usage"] = None
            return json.dumps(payload)

        await event(chunk({"role": "assistant", "content": ""}))
        await self._pause(reply.first_delay_s)
        if reply.gate is not None:
            await reply.gate.wait()
        for i, text in enumerate(reply.chunks):
            if reply.cut_after is not None and i == reply.cut_after:
                return False  # _serve aborts the connection: an incomplete chunked body
            if reply.malformed_after is not None and i == reply.malformed_after:
                await event(reply.malformed)
            if i:
                await self._pause(reply.gap_s)
            await event(chunk({"content": text}))
        if not reply.finish:
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return True
        await event(chunk({}, "stop"))
        if include_usage and reply.usage is not None:
            prompt, completion = reply.usage
            usage = {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            }
            await event(
                json.dumps(
                    {
                        "id": "chatcmpl-fake",
                        "object": "chat.completion.chunk",
                        "created": 0,
                        "model": self.model,
                        "choices": [],
                        "usage": usage,
                    }
                )
            )
        await event("[DONE]")
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True


async def _send_json(
    writer: Any, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
) -> None:
    body = json.dumps(payload).encode()
    head = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    await writer.drain()
