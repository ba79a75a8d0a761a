"""Streaming chat completions from any OpenAI-compatible endpoint, with our own retries (only
before the first token), a circuit breaker, and deadlines for the first token and the end."""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeGuard, cast

if TYPE_CHECKING:
    # Imported where used: the openai package takes longer to import than the rest of a
    # gateway's modules together, and a gateway without an LLM endpoint never needs it.
    import openai
    from openai.types.chat import ChatCompletionMessageParam

from runtimes.llm.breaker import CircuitBreaker
from runtimes.llm.errors import LLMFailure
from runtimes.llm.retry import backoff_delay, parse_retry_after


@dataclass(frozen=True, slots=True)
class LLMConfig:
    base_url: str
    model: str
    api_key: str = "not-needed"
    connect_timeout_s: float = 2.0
    read_timeout_s: float = 20.0
    max_retries: int = 2
    max_tokens: int = 256
    temperature: float = 0.2
    http_client: Literal["aiohttp", "httpx"] = "aiohttp"
    """The openai client's HTTP transport: aiohttp (the openai package's ``DefaultAioHttpClient``)
    spends ~30% less event-loop CPU per streamed chunk than httpx, the package's own default
    (docs/perf/2026-12-02-llm-http.md)."""


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True, slots=True)
class TokenUsage:
    prompt_tokens: int
    completion_tokens: int
    estimated: bool
    """True when the endpoint sent no usage and the counts are estimated from characters."""


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class StreamDone:
    usage: TokenUsage
    finish_reason: str
    attempts: int


ChatEvent = TextDelta | StreamDone


@dataclass(frozen=True, slots=True)
class _Sampling:
    """What one call asks of the model: its completion limit and temperature."""

    max_tokens: int
    temperature: float


def estimate_tokens(text: str) -> int:
    """About four characters a token for English text: good enough for accounting."""
    return math.ceil(len(text) / 4)


class LLMClient:
    """One OpenAI-compatible endpoint and its circuit breaker.

    The openai client's own retries are off (``max_retries=0``): it would retry after text was
    streamed and know nothing of our deadlines.
    """

    def __init__(
        self,
        config: LLMConfig,
        *,
        breaker: CircuitBreaker,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.breaker = breaker
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        import openai

        self._client = openai.AsyncOpenAI(
            base_url=config.base_url,
            api_key=config.api_key,
            timeout=openai.Timeout(config.read_timeout_s, connect=config.connect_timeout_s),
            max_retries=0,
            http_client=openai.DefaultAioHttpClient() if config.http_client == "aiohttp" else None,
        )

    @property
    def model(self) -> str:
        return self.config.model

    @property
    def endpoint(self) -> str:
        return self.config.base_url

    async def aclose(self) -> None:
        await self._client.close()

    async def warm(self) -> None:
        """Imports now what the openai client imports lazily on its first streamed call
        (anyio's event-loop backend, with either transport): before serving, not on the event
        loop between other callers' requests."""
        import anyio

        anyio.Event()  # loads anyio's backend for this loop

    async def stream_chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        first_token_by: float,
        finish_by: float,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> AsyncIterator[ChatEvent]:
        """Yield ``TextDelta``s, then one ``StreamDone``. Raises ``LLMFailure``.

        ``first_token_by`` and ``finish_by`` are ``clock()`` instants: retries happen only
        until the first text arrives and only while they can still beat ``first_token_by``.
        ``max_tokens`` lowers the configured completion limit for this call (never raises it);
        ``temperature`` replaces the configured one for this call.
        """
        limit = self.config.max_tokens
        if max_tokens is not None:
            limit = min(max_tokens, limit)
        temp = self.config.temperature if temperature is None else temperature
        sampling = _Sampling(limit, temp)
        if not self.breaker.try_acquire():
            raise LLMFailure("breaker_open", f"circuit breaker for {self.endpoint} is open")
        verdict = False
        try:
            async for event in self._with_retries(messages, first_token_by, finish_by, sampling):
                yield event
            self.breaker.record_success()
            verdict = True
        except LLMFailure:
            self.breaker.record_failure()
            verdict = True
            raise
        finally:
            if not verdict:  # the caller went away: neither a success nor the endpoint's fault
                self.breaker.release()

    async def _with_retries(
        self,
        messages: Sequence[ChatMessage],
        first_token_by: float,
        finish_by: float,
        sampling: _Sampling,
    ) -> AsyncIterator[ChatEvent]:
        attempt = 0
        while True:
            attempt += 1
            streamed = False
            try:
                async for event in self._attempt(
                    messages, first_token_by, finish_by, attempt, sampling
                ):
                    streamed = streamed or isinstance(event, TextDelta)
                    yield event
                return
            except LLMFailure as failure:
                # Never retry once text has reached the caller: it cannot be taken back.
                if streamed or not failure.retryable or attempt > self.config.max_retries:
                    raise
                delay = backoff_delay(attempt, failure.retry_after_s, self._rng)
                if self._clock() + delay >= first_token_by:
                    raise
                await self._sleep(delay)

    async def _attempt(
        self,
        messages: Sequence[ChatMessage],
        first_token_by: float,
        finish_by: float,
        attempt: int,
        sampling: _Sampling,
    ) -> AsyncIterator[ChatEvent]:
        import openai  # loaded by __init__ already: a dictionary lookup

        completion: list[str] = []
        usage: TokenUsage | None = None
        finish_reason = ""
        stream: Any = None
        try:
            async with self._until(first_token_by, "first_token_timeout"):
                # Through the client's own request, status errors, timeouts and SSE decoding
                # (the retries are ours), with each chunk left as parsed JSON: the SDK's chunk
                # models cost ~7 ms of event-loop CPU per 40-chunk answer, ~60% of the stream
                # (docs/perf/2026-11-28-direct.md).
                stream = await self._client.post(
                    "/chat/completions",
                    cast_to=object,
                    body={
                        "model": self.config.model,
                        "messages": [_to_openai(m) for m in messages],
                        "stream": True,
                        "stream_options": {"include_usage": True},
                        "max_tokens": sampling.max_tokens,
                        "temperature": sampling.temperature,
                    },
                    stream=True,
                    stream_cls=openai.AsyncStream[object],
                )
            chunks = aiter(stream)
            while True:
                if completion:
                    until, reason = finish_by, "deadline"
                else:
                    until, reason = first_token_by, "first_token_timeout"
                async with self._until(until, reason):
                    try:
                        chunk = await anext(chunks)
                    except StopAsyncIteration:
                        break
                text, chunk_finish, chunk_usage = _read_chunk(chunk)
                finish_reason = chunk_finish or finish_reason
                usage = chunk_usage or usage
                if text:
                    completion.append(text)
                    yield TextDelta(text)
        except LLMFailure as failure:
            if completion and failure.reason == "first_token_timeout":
                failure.reason = "deadline"
            raise
        except openai.APIStatusError as err:
            raise _status_failure(err) from err
        except openai.APIConnectionError as err:  # APITimeoutError is one too
            if _timed_out(err):
                raise LLMFailure("timeout", str(err), retryable=not completion) from err
            message = _with_cause(err)
            if stream is None:
                raise LLMFailure("connection_error", message, retryable=True) from err
            raise LLMFailure("stream_cut", message, retryable=not completion) from err
        except openai.APIError as err:
            raise LLMFailure("stream_error", str(err)) from err
        except (ValueError, TypeError, AttributeError) as err:
            # json.JSONDecodeError is a ValueError; a chunk of the wrong shape fails in _read_chunk.
            raise LLMFailure("malformed_chunk", str(err)) from err
        finally:
            if stream is not None:
                await stream.close()
        if not finish_reason:
            # A clean end of the HTTP body without a finish reason: the stream was cut short.
            raise LLMFailure(
                "stream_cut", "stream ended without a finish reason", retryable=not completion
            )
        if usage is None:
            prompt_text = "".join(m.content for m in messages)
            usage = TokenUsage(
                estimate_tokens(prompt_text) + 4 * len(messages),
                estimate_tokens("".join(completion)),
                estimated=True,
            )
        yield StreamDone(usage, finish_reason, attempt)

    def _until(self, instant: float, reason: str) -> _Until:
        return _Until(instant - self._clock(), reason)


class _Until:
    """``asyncio.timeout`` that turns expiry into an ``LLMFailure`` with a reason."""

    def __init__(self, remaining_s: float, reason: str) -> None:
        self._remaining_s = remaining_s
        self._reason = reason
        self._timeout: asyncio.Timeout | None = None

    async def __aenter__(self) -> None:
        if self._remaining_s <= 0:
            raise LLMFailure(self._reason, "no time left")
        self._timeout = asyncio.timeout(self._remaining_s)
        await self._timeout.__aenter__()

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        assert self._timeout is not None
        try:
            await self._timeout.__aexit__(exc_type, exc, tb)
        except TimeoutError as err:
            raise LLMFailure(self._reason, f"after {self._remaining_s:.3f}s") from err
        return False


def _to_openai(message: ChatMessage) -> ChatCompletionMessageParam:
    return cast("ChatCompletionMessageParam", {"role": message.role, "content": message.content})


def _read_chunk(chunk: Any) -> tuple[str, str, TokenUsage | None]:
    """Text, finish reason and usage of one streamed chunk (a ``chat.completion.chunk`` object
    as parsed JSON); raises ValueError when it has the wrong shape."""
    choices = chunk.get("choices") if isinstance(chunk, dict) else None
    if not isinstance(choices, list):
        raise ValueError(f"chunk without a choices list: {_short(chunk)}")
    text, finish = "", ""
    for choice in choices:
        if not isinstance(choice, dict):
            raise ValueError(f"chunk choice is not an object: {_short(chunk)}")
        delta = choice.get("delta")
        content = delta.get("content") if isinstance(delta, dict) else None
        if content is not None and not isinstance(content, str):
            raise ValueError(f"chunk content is not text: {_short(chunk)}")
        text += content or ""
        reason = choice.get("finish_reason")
        if reason is not None and not isinstance(reason, str):
            raise ValueError(f"chunk finish reason is not text: {_short(chunk)}")
        finish = reason or finish
    usage = None
    raw_usage = chunk.get("usage")
    if raw_usage is not None:
        prompt = raw_usage.get("prompt_tokens") if isinstance(raw_usage, dict) else None
        completion = raw_usage.get("completion_tokens") if isinstance(raw_usage, dict) else None
        if not _is_count(prompt) or not _is_count(completion):
            raise ValueError(f"chunk usage without token counts: {_short(chunk)}")
        usage = TokenUsage(prompt, completion, estimated=False)
    return text, finish, usage


def _transport_cause(err: BaseException) -> BaseException | None:
    """The aiohttp exception behind an openai connection error, if its transport is aiohttp."""
    cause = err.__cause__
    while cause is not None and not type(cause).__module__.startswith("aiohttp"):
        cause = cause.__cause__
    return cause


def _timed_out(err: openai.APIConnectionError) -> bool:
    """Whether the call ran out of time, rather than losing or never getting its connection.

    openai says so with ``APITimeoutError``, from the exception its HTTP transport raised. The
    aiohttp transport raises httpx's ``ConnectTimeout`` for every aiohttp connection error
    (refused, reset, closed mid-stream), so behind it the aiohttp exception decides: its
    timeouts are ``TimeoutError``s."""
    import openai

    cause = _transport_cause(err)
    if cause is not None:
        return isinstance(cause, TimeoutError)
    return isinstance(err, openai.APITimeoutError)


def _with_cause(err: BaseException) -> str:
    cause = _transport_cause(err) or err.__cause__
    return f"{err} ({type(cause).__name__}: {cause})" if cause is not None else str(err)


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _status_failure(err: openai.APIStatusError) -> LLMFailure:
    status = err.status_code
    retryable = status in (408, 409, 429) or status >= 500
    retry_after = None
    if status in (429, 503):
        retry_after = parse_retry_after(err.response.headers.get("retry-after"))
    reason = "rate_limited" if status == 429 else f"http_{status}"
    return LLMFailure(reason, str(err), retryable=retryable, retry_after_s=retry_after)


def _short(obj: Any) -> str:
    try:
        text = json.dumps(obj, default=str)
    except (TypeError, ValueError):
        text = repr(obj)
    return text[:200]
