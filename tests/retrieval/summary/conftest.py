"""Fixtures for summary tests: a fake OpenAI-protocol server on loopback, an in-memory notes
store with two tenants, and a factory for summarizers pointed at the server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from summary_helpers import MEETING, seed

from retrieval.embedder import OnnxEmbedder
from retrieval.summary import Summarizer, SummaryCache, TenantLimiter
from retrieval.summary.guard import SentenceGuard
from runtimes.llm import CircuitBreaker, LLMClient, LLMConfig
from tests.fakes.notes import InMemoryNotes
from tests.fakes.openai_server import FakeOpenAI, StreamReply
from tests.fakes.scorer import FixedScorer


@pytest.fixture
async def llm_server() -> AsyncIterator[FakeOpenAI]:
    # By default the fake writes a sentence the guard lets through (it restates note [1]).
    server = await FakeOpenAI(default=StreamReply([MEETING])).start()
    yield server
    await server.aclose()


@pytest.fixture
def notes() -> InMemoryNotes:
    store = InMemoryNotes()
    seed(store)
    return store


@pytest.fixture
def scorer() -> FixedScorer:
    return FixedScorer()


MakeSummarizer = Callable[..., Summarizer]


@pytest.fixture
def llm_http_client() -> str:
    """The LLM client's HTTP transport (the gateway's default); test_summary_faults.py runs its
    faults through both."""
    return "aiohttp"


@pytest.fixture
async def make_summarizer(
    llm_server: FakeOpenAI,
    notes: InMemoryNotes,
    scorer: FixedScorer,
    embedder: OnnxEmbedder,
    llm_http_client: str,
) -> AsyncIterator[MakeSummarizer]:
    made: list[Summarizer] = []

    def make(
        *,
        endpoint: str | None = "fake",
        max_retries: int = 0,
        breaker: CircuitBreaker | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        per_tenant: int = 4,
        cache_entries: int = 16,
        mask_pii: bool = False,
        read_timeout_s: float = 20.0,
        **kwargs: Any,
    ) -> Summarizer:
        llm = None
        if endpoint is not None:
            extra: dict[str, Any] = {"sleep": sleep} if sleep is not None else {}
            llm = LLMClient(
                LLMConfig(
                    base_url=llm_server.base_url if endpoint == "fake" else endpoint,
                    model="fake-model",
                    max_retries=max_retries,
                    connect_timeout_s=1.0,
                    read_timeout_s=read_timeout_s,
                    http_client=llm_http_client,  # type: ignore[arg-type]
                ),
                breaker=breaker or CircuitBreaker(5, 30.0),
                **extra,
            )
        summarizer = Summarizer(
            notes=notes,
            scorer=scorer,
            llm=llm,
            cache=SummaryCache(cache_entries),
            limiter=TenantLimiter(per_tenant),
            mask_pii=mask_pii,
            guard=kwargs.pop("guard", None) or SentenceGuard(embedder=embedder),
            **kwargs,
        )
        made.append(summarizer)
        return summarizer

    yield make
    for summarizer in made:
        await summarizer.aclose()
