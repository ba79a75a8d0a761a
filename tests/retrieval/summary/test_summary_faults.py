"""Every LLM fault ends in a good, marked fallback summary inside the deadline, with the reason
in the final result and no exception leaking."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time

import pytest
from summary_helpers import (
    MEETING,
    OTHER_TENANT,
    RETIRING,
    ManualClock,
    collect,
    model_part,
    summarize,
)

from retrieval.summary import SummaryResult
from retrieval.summary.fallback import FALLBACK_HEADER
from retrieval.summary.guard import SentenceGuard
from runtimes.errors import ResourceExhausted
from runtimes.llm import BreakerState, CircuitBreaker
from tests.fakes.openai_server import ErrorReply, SilentReply, StreamReply


@pytest.fixture(params=["aiohttp", "httpx"])
def llm_http_client(request: pytest.FixtureRequest) -> str:
    """Every fault through both of the LLM client's HTTP transports: each names the faults its
    own way (aiohttp's transport calls every connection error a timeout)."""
    return str(request.param)


def assert_good_fallback(chunks: list[str], result: SummaryResult, reason: str) -> None:
    """The whole text is the marked fallback, citing the lead's three notes, newest first."""
    text = "".join(chunks)
    assert text.startswith(FALLBACK_HEADER)
    assert "Conversion score: 72% (hot)." in text
    assert "Retiring within 5 years (raises the odds)" in text
    assert (
        "2024-05-15 meeting: Meeting booked for June to review pension transfer options. [1]"
        in text
    )
    assert result.fallback and result.generator == "fallback"
    assert result.fallback_reason == reason
    assert [(c.index, c.note_id) for c in result.citations] == [(1, "n-3"), (2, "n-2"), (3, "n-1")]
    assert set(re.findall(r"\[(\d+)\]", text)) == {"1", "2", "3"}
    assert result.removed_citations == 0 and not result.cached


class SleepRecorder:
    """Stands in for asyncio.sleep in the LLM client: records the backoff it was asked for."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


async def test_slow_first_token_falls_back_before_the_deadline(llm_server, make_summarizer):
    llm_server.script(StreamReply(["too late"], first_delay_s=30))
    chunks, result = await summarize(make_summarizer(), timeout_s=1.5)

    assert_good_fallback(chunks, result, "first_token_timeout")
    assert "too late" not in "".join(chunks)


async def test_endpoint_that_never_answers(llm_server, make_summarizer):
    llm_server.default = SilentReply()
    chunks, result = await summarize(make_summarizer(max_retries=2), timeout_s=1.5)

    assert_good_fallback(chunks, result, "first_token_timeout")


async def test_read_timeout_shorter_than_the_deadline(llm_server, make_summarizer):
    llm_server.default = SilentReply()
    chunks, result = await summarize(make_summarizer(read_timeout_s=0.2), timeout_s=3)

    assert_good_fallback(chunks, result, "timeout")


async def test_connection_refused(make_summarizer):
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    summarizer = make_summarizer(endpoint=f"http://127.0.0.1:{port}/v1")
    chunks, result = await summarize(summarizer)

    assert_good_fallback(chunks, result, "connection_error")


async def test_http_500_without_retries(llm_server, make_summarizer):
    llm_server.default = ErrorReply(500)
    chunks, result = await summarize(make_summarizer(max_retries=0))

    assert_good_fallback(chunks, result, "http_500")
    assert len(llm_server.chat_requests) == 1


async def test_http_500_is_retried_with_backoff_then_falls_back(llm_server, make_summarizer):
    llm_server.default = ErrorReply(500)
    sleeps = SleepRecorder()
    chunks, result = await summarize(make_summarizer(max_retries=2, sleep=sleeps))

    assert_good_fallback(chunks, result, "http_500")
    assert len(llm_server.chat_requests) == 3
    assert len(sleeps.delays) == 2 and sleeps.delays[1] > 0


async def test_http_500_then_success_is_not_a_fallback(llm_server, make_summarizer):
    llm_server.script(ErrorReply(502), StreamReply(["Retiring soon [3]."]))
    chunks, result = await summarize(make_summarizer(max_retries=1, sleep=SleepRecorder()))

    assert model_part("".join(chunks)) == "Retiring soon [3]."
    assert not result.fallback and result.generator == "fake-model"


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_is_honoured_then_succeeds(llm_server, make_summarizer, status):
    llm_server.script(
        ErrorReply(status, headers={"retry-after": "1"}), StreamReply(["Retiring soon [3]."])
    )
    sleeps = SleepRecorder()
    chunks, result = await summarize(make_summarizer(max_retries=2, sleep=sleeps))

    assert sleeps.delays == [1.0]
    assert len(llm_server.chat_requests) == 2
    assert not result.fallback and model_part("".join(chunks)) == "Retiring soon [3]."


async def test_rate_limit_retries_exhausted(llm_server, make_summarizer):
    llm_server.default = ErrorReply(429, headers={"retry-after": "0"})
    chunks, result = await summarize(make_summarizer(max_retries=2, sleep=SleepRecorder()))

    assert_good_fallback(chunks, result, "rate_limited")
    assert len(llm_server.chat_requests) == 3


async def test_retry_after_beyond_the_deadline_is_not_waited_for(llm_server, make_summarizer):
    llm_server.default = ErrorReply(429, headers={"retry-after": "120"})
    sleeps = SleepRecorder()
    chunks, result = await summarize(make_summarizer(max_retries=5, sleep=sleeps), timeout_s=3)

    assert_good_fallback(chunks, result, "rate_limited")
    assert sleeps.delays == [] and len(llm_server.chat_requests) == 1


async def test_stream_cut_before_any_text_is_retried(llm_server, make_summarizer):
    llm_server.script(StreamReply(["never sent"], cut_after=0), StreamReply([MEETING]))
    chunks, result = await summarize(make_summarizer(max_retries=1, sleep=SleepRecorder()))

    assert model_part("".join(chunks)) == MEETING
    assert not result.fallback and len(llm_server.chat_requests) == 2


async def test_stream_cut_before_any_text_without_retries(llm_server, make_summarizer):
    llm_server.script(StreamReply(["never sent"], cut_after=0))
    chunks, result = await summarize(make_summarizer(max_retries=0))

    assert_good_fallback(chunks, result, "stream_cut")


async def test_stream_cut_after_text_keeps_it_and_finishes_with_marked_fallback(
    llm_server, make_summarizer
):
    llm_server.script(
        StreamReply(["Retiring within ", "five years [3] [8]. ", "Then"], cut_after=2)
    )
    chunks, result = await summarize(make_summarizer(max_retries=3, sleep=SleepRecorder()))

    text = "".join(chunks)
    llm_part, notice, rest = re.split(
        r"\n\n(\[The AI summary above was interrupted.*?\])\n\n", model_part(text)
    )
    assert llm_part == "Retiring within five years [3]."
    assert "stream_cut" in notice
    # The facts block already showed the score: the fallback does not repeat it.
    assert rest.startswith("Most recent notes:") and text.count("Conversion score") == 1
    assert "[1]" in rest and FALLBACK_HEADER not in text
    assert len(llm_server.chat_requests) == 1  # never retried once text was shown
    assert result.fallback and result.generator == "fake-model"
    assert result.fallback_reason == "stream_cut after partial output"
    assert result.removed_citations == 1
    assert [c.note_id for c in result.citations] == ["n-3", "n-2", "n-1"]
    assert result.tokens_estimated and result.completion_tokens > 0


async def test_body_ending_without_finish_reason_is_a_cut(llm_server, make_summarizer):
    llm_server.script(StreamReply([RETIRING], finish=False))
    chunks, result = await summarize(make_summarizer())

    text = model_part("".join(chunks))
    assert text.startswith(f"{RETIRING}\n\n[The AI summary above was interrupted")
    assert result.fallback_reason == "stream_cut after partial output"


async def test_malformed_chunk_before_text(llm_server, make_summarizer):
    llm_server.script(StreamReply(["never shown"], malformed_after=0))
    chunks, result = await summarize(make_summarizer(max_retries=2))

    assert_good_fallback(chunks, result, "malformed_chunk")
    assert len(llm_server.chat_requests) == 1  # a broken server is not asked again


async def test_malformed_chunk_after_text(llm_server, make_summarizer):
    llm_server.script(StreamReply([f"{RETIRING} ", "never shown"], malformed_after=1))
    chunks, result = await summarize(make_summarizer())

    text = model_part("".join(chunks))
    assert text.startswith(RETIRING) and "never shown" not in text
    assert result.fallback_reason == "malformed_chunk after partial output"


# Valid JSON of the wrong shape: the gateway reads each chunk as parsed JSON (not the openai
# client's models, which accept any shape), so each must be refused by its own checks.
WRONG_SHAPES = {
    "not an object": "[1, 2]",
    "choices not a list": '{"choices": "nope"}',
    "choice not an object": '{"choices": ["x"]}',
    "content not text": '{"choices": [{"delta": {"content": 7}}]}',
    "finish reason not text": '{"choices": [{"delta": {}, "finish_reason": 1}]}',
    "usage without counts": '{"choices": [], "usage": {"prompt_tokens": "many"}}',
    "usage counts not integers": (
        '{"choices": [], "usage": {"prompt_tokens": true, "completion_tokens": 2}}'
    ),
}


@pytest.mark.parametrize("shape", WRONG_SHAPES)
async def test_a_chunk_of_the_wrong_shape_is_malformed(llm_server, make_summarizer, shape):
    llm_server.script(
        StreamReply(
            [f"{RETIRING} ", "never shown"], malformed_after=1, malformed=WRONG_SHAPES[shape]
        )
    )
    chunks, result = await summarize(make_summarizer())

    text = model_part("".join(chunks))
    assert text.startswith(RETIRING) and "never shown" not in text
    assert result.fallback_reason == "malformed_chunk after partial output"


async def test_an_error_object_in_the_stream_ends_it_as_a_stream_error(llm_server, make_summarizer):
    llm_server.script(
        StreamReply(
            [f"{RETIRING} ", "never shown"],
            malformed_after=1,
            malformed='{"error": {"message": "model overloaded", "type": "server_error"}}',
        )
    )
    chunks, result = await summarize(make_summarizer())

    text = model_part("".join(chunks))
    assert text.startswith(RETIRING) and "never shown" not in text
    assert result.fallback_reason == "stream_error after partial output"


async def test_stream_too_slow_to_finish_is_cut_at_the_deadline(llm_server, make_summarizer):
    llm_server.script(StreamReply([f"{RETIRING} ", "slow ", "slower ", "slowest"], gap_s=1.0))
    chunks, result = await summarize(make_summarizer(), timeout_s=1.5)

    text = model_part("".join(chunks))
    assert text.startswith(RETIRING) and "slowest" not in text
    assert result.fallback_reason == "deadline after partial output"


async def test_usage_is_estimated_when_the_server_sends_none(llm_server, make_summarizer):
    llm_server.script(StreamReply(["Retiring soon [3]."], usage=None))
    _, result = await summarize(make_summarizer())

    assert not result.fallback and result.tokens_estimated
    assert result.prompt_tokens > 100 and result.completion_tokens == 5


async def test_breaker_opens_after_n_failures_and_recovers_half_open(llm_server, make_summarizer):
    clock = ManualClock()
    breaker = CircuitBreaker(2, 30.0, clock=clock)
    summarizer = make_summarizer(breaker=breaker)
    llm_server.default = ErrorReply(500)

    for _ in range(2):
        _, result = await summarize(summarizer)
        assert result.fallback_reason == "http_500"
    assert breaker.state is BreakerState.OPEN

    chunks, result = await summarize(summarizer)
    assert_good_fallback(chunks, result, "breaker_open")
    assert len(llm_server.chat_requests) == 2  # the open breaker sent nothing

    clock.now += 31
    assert breaker.state is BreakerState.HALF_OPEN
    llm_server.default = StreamReply([MEETING])
    chunks, result = await summarize(summarizer)
    assert not result.fallback, result.fallback_reason
    assert model_part("".join(chunks)) == MEETING
    assert breaker.state is BreakerState.CLOSED
    assert len(llm_server.chat_requests) == 3


async def test_failed_half_open_trial_reopens_the_breaker(llm_server, make_summarizer):
    clock = ManualClock()
    breaker = CircuitBreaker(1, 10.0, clock=clock)
    summarizer = make_summarizer(breaker=breaker)
    llm_server.default = ErrorReply(503)

    await summarize(summarizer)
    clock.now += 11
    _, result = await summarize(summarizer)  # the half-open trial, failing
    assert result.fallback_reason == "http_503"
    assert breaker.state is BreakerState.OPEN
    _, result = await summarize(summarizer)
    assert result.fallback_reason == "breaker_open"
    assert len(llm_server.chat_requests) == 2


async def test_per_tenant_concurrency_limit(llm_server, make_summarizer):
    gate = asyncio.Event()
    # The held summary, then the other tenant's (grounded in its own note).
    llm_server.script(
        StreamReply([MEETING], gate=gate),
        StreamReply(["Globex expects a merger next week [1]."]),
    )
    llm_server.default = StreamReply([MEETING])
    summarizer = make_summarizer(per_tenant=1)

    first = asyncio.create_task(summarize(summarizer, timeout_s=60))
    for _ in range(500):  # bounded: wait until the first summary is at the LLM
        if llm_server.chat_requests:
            break
        await asyncio.sleep(0.01)
    assert llm_server.chat_requests

    with pytest.raises(ResourceExhausted) as refused:
        await summarize(summarizer)
    assert refused.value.retry_after_s
    _, other = await summarize(summarizer, tenant=OTHER_TENANT, lead_id="lead-g")
    assert not other.fallback  # another tenant is not limited by this one

    gate.set()
    chunks, result = await first
    assert not result.fallback, result.fallback_reason
    assert model_part("".join(chunks)) == MEETING
    _, again = await summarize(summarizer)  # the slot was released
    assert again.cached


async def test_abandoned_stream_releases_its_tenant_slot(llm_server, make_summarizer):
    llm_server.default = StreamReply([MEETING, " ", RETIRING])
    summarizer = make_summarizer(per_tenant=1)
    events = summarizer.summarize("acme", "lead-1", None, deadline=time.monotonic() + 5)
    await anext(events)  # the client reads one chunk, then goes away
    await events.aclose()

    _, result = await collect(
        summarizer.summarize("acme", "lead-1", None, deadline=time.monotonic() + 5)
    )
    assert result.generator == "fake-model"


async def test_a_guard_whose_model_cannot_run_ends_in_the_marked_fallback_by_the_deadline(
    llm_server, make_summarizer, embedder
):
    """The guard's embedding thread gets no CPU (guard_embed_priority idle on a saturated
    machine; here: its one thread is kept busy): the summary ends in the marked fallback before
    its deadline instead of waiting on the guard past it."""
    blocked = embedder.on_own_thread("normal")
    release = threading.Event()
    blocked._executor.submit(release.wait)
    try:
        summarizer = make_summarizer(guard=SentenceGuard(embedder=blocked))
        chunks, result = await asyncio.wait_for(summarize(summarizer, timeout_s=1.5), 15)
    finally:
        release.set()
        await blocked.close()

    assert_good_fallback(chunks, result, "guard_timeout")
    assert MEETING not in "".join(chunks)
