"""A summary's retrieval: one batched search (the lead's notes and the firm documents) beside
the recent notes, not a store call per search."""

from __future__ import annotations

from summary_helpers import summarize


async def test_retrieval_searches_once_for_both_scopes(llm_server, make_summarizer, notes) -> None:
    _, result = await summarize(make_summarizer())
    assert not result.fallback
    assert notes.calls.count("search_scopes") == 1
    assert "search" not in notes.calls
