"""A loopback OpenAI-protocol LLM stand-in for the summary bench, run as its own process.

It answers ``POST /v1/chat/completions`` with ``"stream": true`` the way the ``openai`` client
expects (``text/event-stream`` chunks in HTTP/1.1 chunked encoding, a usage chunk when asked, then
``data: [DONE]``), with a configured pause before the first text and between texts. The bench
changes that pacing between phases with ``POST /bench/reply``, so one gateway serves both the
fast first-token phase and the slow, long-open streams.

Adapted from tests/fakes/openai_server.py (benchmarks must not import tests/), without the fault
scripting the tests need.

    python -m benchmarks.fake_llm   # prints "listening on 127.0.0.1:PORT"
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import json
import re
import signal
from dataclasses import asdict, dataclass
from typing import Any

MODEL = "bench-fake-llm"
_WORDS = ["The", "lead", "asked", "about", "retirement", "income", "and", "wants"]


@dataclass
class Pacing:
    """How one streamed answer is paced; ``chunks`` texts of one or two words each."""

    first_delay_s: float = 0.05
    gap_s: float = 0.0
    chunks: int = 12

    def texts(self) -> list[str]:
        return [_WORDS[i % len(_WORDS)] + " " for i in range(self.chunks)]


class FakeLLM:
    """Serves until ``stop()``; every stream follows the current ``pacing``."""

    def __init__(self, pacing: Pacing, replies: dict[str, str] | None = None) -> None:
        self.pacing = pacing
        self.replies = replies or {}
        """Lead id -> the text to write when the prompt's "Lead: <id>" line names it (the
        summary-quality bench); other prompts get the paced filler words."""
        self.streams = 0
        self._stopped = asyncio.Event()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            # Keep-alive: the gateway's HTTP client reuses connections.
            while not self._stopped.is_set():
                request = await _read_request(reader)
                if request is None:
                    return
                path, body = request
                if path == "/bench/reply":
                    self.pacing = Pacing(**{**asdict(self.pacing), **body})
                    await _send_json(writer, {"pacing": asdict(self.pacing)})
                elif path.endswith("/chat/completions") and body.get("stream"):
                    self.streams += 1
                    await self._stream(writer, self.pacing, body)
                else:
                    await _send_json(writer, {"error": {"message": f"not served: {path}"}}, 404)
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.transport.abort()

    def stop(self) -> None:
        self._stopped.set()

    async def _pause(self, seconds: float) -> None:
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), seconds)

    async def _stream(self, writer: asyncio.StreamWriter, pacing: Pacing, body: dict) -> None:
        usage_wanted = bool((body.get("stream_options") or {}).get("include_usage"))
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\ncache-control: no-cache\r\n\r\n"
        )

        async def event(payload: dict[str, Any] | str) -> None:
            data = payload if isinstance(payload, str) else json.dumps(payload)
            line = f"data: {data}\n\n".encode()
            writer.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
            await writer.drain()

        await event(_chunk({"role": "assistant", "content": ""}))
        await self._pause(pacing.first_delay_s)
        texts = self._scripted(body) or _grounded(body, pacing.chunks) or pacing.texts()
        for i, text in enumerate(texts):
            if i:
                await self._pause(pacing.gap_s)
            await event(_chunk({"content": text}))
        await event(_chunk({}, "stop"))
        if usage_wanted:
            usage = {"prompt_tokens": 400, "completion_tokens": len(texts), "total_tokens": 0}
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
            await event({**_chunk({}), "choices": [], "usage": usage})
        await event("[DONE]")
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    def _scripted(self, body: dict) -> list[str]:
        prompt = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
        for lead_id, reply in self.replies.items():
            if f"Lead: {lead_id}\n" in prompt:
                return [word + " " for word in reply.split(" ")]
        return []


def _grounded(body: dict, chunks: int) -> list[str]:
    """The first sentence of the prompt's note [1], cited, spread over ``chunks`` chunks (padded
    with whitespace): text the gateway's sentence guard lets through, so that a bench summary is
    shown, not replaced by the fallback. Empty when the prompt has no note."""
    prompt = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
    found = _NOTE_ONE.search(prompt)
    if found is None:
        return []
    first = re.split(r"(?<=[.!?])\s", html.unescape(found.group(1)).strip(), maxsplit=1)[0]
    words = first.rstrip(".!?").split()[:30]
    if not words:
        return []
    texts = [w + " " for w in words[:-1]] + [f"{words[-1]} [1]."]
    return texts + [" "] * max(0, chunks - len(texts))


_NOTE_ONE = re.compile(r'<note n="1"[^>]*>(.*?)</note>', re.S)


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, Any]] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    path = lines[0].split(" ")[1]
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    raw = await reader.readexactly(length) if length else b""
    return path, (json.loads(raw) if raw else {})


async def _send_json(
    writer: asyncio.StreamWriter, payload: dict[str, Any], status: int = 200
) -> None:
    body = json.dumps(payload).encode()
    head = (
        f"HTTP/1.1 {status} {'OK' if status == 200 else 'Not Found'}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    writer.write(head.encode() + body)
    await writer.drain()


async def set_pacing(address: str, pacing: Pacing, timeout_s: float = 5.0) -> None:
    """Tell a running stand-in at ``HOST:PORT`` how to pace the streams it starts from now on."""
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout_s)
    try:
        body = json.dumps(asdict(pacing)).encode()
        writer.write(
            f"POST /bench/reply HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), timeout_s)
        if b" 200 " not in status:
            raise RuntimeError(f"fake LLM at {address} refused the pacing: {status!r}")
    finally:
        writer.close()


async def _main(port: int) -> None:
    llm = FakeLLM(Pacing())
    server = await asyncio.start_server(llm.serve, "127.0.0.1", port)
    bound = server.sockets[0].getsockname()
    print(f"fake LLM listening on {bound[0]}:{bound[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    llm.stop()
    server.close()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(server.wait_closed(), 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Loopback OpenAI-protocol LLM stand-in.")
    parser.add_argument("--port", type=int, default=0)
    asyncio.run(_main(parser.parse_args(argv).port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
