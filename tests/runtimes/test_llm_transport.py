"""The LLM client's HTTP transport comes from the ``llm_http_client`` setting, and streams the
same answer through either."""

from __future__ import annotations

import time

import openai
import pytest
from pydantic import ValidationError

from gateway.settings import Settings
from retrieval.summary.factory import llm_from_settings
from runtimes.llm import LLMClient
from runtimes.llm.client import ChatMessage, StreamDone, TextDelta
from tests.fakes.openai_server import FakeOpenAI, StreamReply


async def _stream(llm: LLMClient) -> tuple[str, str]:
    now = time.monotonic()
    text, finish = "", ""
    async for event in llm.stream_chat(
        [ChatMessage("user", "Summarise.")], first_token_by=now + 5, finish_by=now + 10
    ):
        if isinstance(event, TextDelta):
            text += event.text
        elif isinstance(event, StreamDone):
            finish = event.finish_reason
    return text, finish


@pytest.mark.parametrize(
    ("variable", "transport", "other"),
    [
        (None, openai.DefaultAioHttpClient, openai.DefaultAsyncHttpxClient),
        ("httpx", openai.DefaultAsyncHttpxClient, openai.DefaultAioHttpClient),
    ],
)
async def test_the_setting_picks_the_transport_and_both_stream_the_answer(
    monkeypatch: pytest.MonkeyPatch, variable: str | None, transport: type, other: type
) -> None:
    server = await FakeOpenAI(default=StreamReply(["Met in June ", "about pensions."])).start()
    if variable is None:
        monkeypatch.delenv("LEADGW_LLM_HTTP_CLIENT", raising=False)
    else:
        monkeypatch.setenv("LEADGW_LLM_HTTP_CLIENT", variable)
    llm = llm_from_settings(Settings(llm_base_url=server.base_url))
    assert llm is not None
    try:
        http_client = llm._client._client  # the openai client's own
        assert isinstance(http_client, transport) and not isinstance(http_client, other)
        assert await _stream(llm) == ("Met in June about pensions.", "stop")
    finally:
        await llm.aclose()
        await server.aclose()


def test_an_unknown_transport_is_refused_by_name() -> None:
    with pytest.raises(ValidationError, match="llm_http_client"):
        Settings(llm_http_client="requests")  # type: ignore[arg-type]
