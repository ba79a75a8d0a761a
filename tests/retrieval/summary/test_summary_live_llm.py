"""End to end through a real OpenAI-compatible server (``make llm-local``: llama.cpp with
SmolLM2-135M-Instruct). Skipped unless LEADGW_TEST_LLM_URL names it; the fake-server tests cover
the same paths without it."""

from __future__ import annotations

import os
import re
import time

import pytest
from summary_helpers import LEAD, TENANT, collect

from retrieval.summary import Summarizer, SummaryCache, TenantLimiter
from retrieval.summary.guard import SentenceGuard
from runtimes.llm import CircuitBreaker, LLMClient, LLMConfig, should_mask

LLM_URL = os.environ.get("LEADGW_TEST_LLM_URL")
pytestmark = pytest.mark.skipif(
    not LLM_URL, reason="set LEADGW_TEST_LLM_URL (e.g. http://127.0.0.1:8080/v1, make llm-local)"
)


async def test_real_llm_summarises_a_demo_lead(notes, scorer, embedder):
    assert LLM_URL is not None
    llm = LLMClient(
        LLMConfig(
            base_url=LLM_URL,
            model=os.environ.get("LEADGW_TEST_LLM_MODEL", "smollm2-135m-instruct"),
            max_tokens=128,
            max_retries=1,
        ),
        breaker=CircuitBreaker(5, 30.0),
    )
    summarizer = Summarizer(
        notes=notes,
        scorer=scorer,
        llm=llm,
        cache=SummaryCache(8),
        limiter=TenantLimiter(2),
        mask_pii=should_mask("auto", LLM_URL),
        guard=SentenceGuard(embedder=embedder),
    )
    try:
        deadline = time.monotonic() + 60
        chunks, result = await collect(summarizer.summarize(TENANT, LEAD, None, deadline=deadline))
        _, again = await collect(summarizer.summarize(TENANT, LEAD, None, deadline=deadline))
    finally:
        await summarizer.aclose()

    text = "".join(chunks)
    assert not result.fallback, result.fallback_reason
    assert result.generator == llm.model and text.strip()
    # llama.cpp's Python server sends no usage in streams: the counts are then estimated.
    assert result.completion_tokens > 0 and result.prompt_tokens > 0
    print(
        f"\n--- {result.generator} ({result.latency.first_token_ms:.0f} ms to first token)\n{text}"
    )
    # Whatever a 135M model writes, no citation it shows points outside the four given notes.
    assert {int(n) for n in re.findall(r"\[(\d+)\]", text)} <= {1, 2, 3, 4}
    assert {c.index for c in result.citations} <= {1, 2, 3, 4}
    assert again.cached and again.citations == result.citations
