"""End to end through a real OpenAI-compatible server: llama.cpp with a small local model
(``scripts/llm-local.sh``; ``.ci/run`` starts it and sets LEADGW_TEST_LLM_URL, so these run in
CI). Skipped on a developer machine without it; the fake-server tests cover the same paths.

A 135M/270M model writes few sentences its notes support: what is asserted is what must hold
whatever it writes — the server answers (no crash, right chat template), nothing unchecked is
shown, and every citation shown names a note that was given."""

from __future__ import annotations

import os
import re
import time

import pytest
from openai import AsyncOpenAI
from summary_helpers import LEAD, PROFILE, TENANT, collect

from retrieval.summary import Summarizer, SummaryCache, TenantLimiter
from retrieval.summary.guard import SentenceGuard
from retrieval.summary.prompt import build_prompt
from runtimes.llm import CircuitBreaker, LLMClient, LLMConfig, should_mask
from runtimes.types import LeadInput
from tests.fakes.scorer import FixedScorer

LLM_URL = os.environ.get("LEADGW_TEST_LLM_URL")
LLM_MODEL = os.environ.get("LEADGW_TEST_LLM_MODEL", "smollm2-135m-instruct")
pytestmark = pytest.mark.skipif(
    not LLM_URL, reason="set LEADGW_TEST_LLM_URL (e.g. http://127.0.0.1:8080/v1, make llm-local)"
)
TEMPLATE_MARKERS = re.compile(
    r"<<SYS>>|<</SYS>>|\[/?INST\]|<start_of_turn>|<end_of_turn>|<\|im_start\|>|<\|im_end\|>"
)


@pytest.mark.parametrize("style", ["whole", "per_note"])
async def test_real_llm_output_has_no_chat_template_markers(notes, scorer: FixedScorer, style: str):
    """The server formats the chat with the model's own template: with the wrong one, small
    models echo its markers (Gemma under Llama-2's format wrote <<SYS>> and [/INST])."""
    assert LLM_URL is not None
    (score,) = await scorer.score_leads([LeadInput(LEAD, PROFILE)])
    sources = await notes.recent_notes(TENANT, LEAD, 3)
    prompt = build_prompt(LEAD, score, sources, mask=False, per_note=style == "per_note")
    messages = prompt.note_requests[0].messages if style == "per_note" else prompt.messages
    client = AsyncOpenAI(base_url=LLM_URL, api_key="not-needed", max_retries=0, timeout=120)
    try:
        answer = await client.chat.completions.create(
            model=LLM_MODEL,
            messages=[{"role": m.role, "content": m.content} for m in messages],
            max_tokens=96,
            temperature=0.0,
        )
    finally:
        await client.close()
    text = answer.choices[0].message.content or ""
    print(f"\n--- raw {LLM_MODEL}:\n{text}")
    assert text.strip()
    assert not TEMPLATE_MARKERS.search(text), text


@pytest.mark.parametrize("style", ["whole", "per_note"])
async def test_real_llm_summary_through_the_guard(notes, scorer, embedder, style):
    assert LLM_URL is not None
    llm = LLMClient(
        LLMConfig(base_url=LLM_URL, model=LLM_MODEL, max_tokens=128, max_retries=1),
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
        style=style,
    )
    try:
        deadline = time.monotonic() + 120
        chunks, result = await collect(summarizer.summarize(TENANT, LEAD, None, deadline=deadline))
    finally:
        await summarizer.aclose()

    text = "".join(chunks)
    print(
        f"\n--- {result.generator}: shown {result.sentences_shown}, dropped "
        f"{result.dropped_by_reason}, first token {result.latency.first_token_ms:.0f} ms\n{text}"
    )
    # The model answered (a crashed or unreachable server would give connection_error etc.):
    # the only fallback allowed is the guard's verdict on what it wrote.
    assert result.fallback_reason in ("", "guard_rejected", "guard_rejected after partial output")
    assert result.completion_tokens > 0 and result.prompt_tokens > 0
    assert result.sentences_shown + result.sentences_dropped > 0
    assert not TEMPLATE_MARKERS.search(text)
    assert {int(n) for n in re.findall(r"\[(\d+)\]", text)} <= {1, 2, 3, 4}
    assert {c.index for c in result.citations} <= {1, 2, 3, 4}
    assert "Conversion score: 72% (hot)." in text  # the gateway's facts, never the model's
