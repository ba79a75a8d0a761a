"""What a summary stream yields: text chunks, then one ``SummaryResult``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from runtimes.types import LeadInput, LeadScore


class LeadScorer(Protocol):
    """What summaries need from the scorer."""

    async def score_leads(
        self,
        leads: Sequence[LeadInput],
        *,
        model: str | None = None,
        version: str | None = None,
        max_reasons: int = 3,
        tenant: str = "",
    ) -> list[LeadScore]: ...

    def version_for(self, model: str | None, tenant: str, lead_id: str) -> str | None:
        """The version a request naming none scores this lead with, or None for the model's
        live one (a canary takes a sticky share of leads)."""
        ...


@dataclass(frozen=True, slots=True)
class Citation:
    index: int
    """The [n] marker in the text."""
    note_id: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class LatencyBreakdown:
    score_ms: float = 0.0
    retrieve_ms: float = 0.0
    prompt_ms: float = 0.0
    first_token_ms: float = 0.0
    total_ms: float = 0.0
    first_shown_ms: float = 0.0
    """From the request to the model until the first sentence the guard let through."""


@dataclass(frozen=True, slots=True)
class TextChunk:
    text: str


@dataclass(frozen=True, slots=True)
class SummaryResult:
    """Always the last event of a summary."""

    citations: list[Citation]
    generator: str
    """The LLM model name, or "fallback" when no LLM text was used."""
    fallback: bool
    """True when any of the text is the deterministic fallback summary."""
    fallback_reason: str
    prompt_tokens: int
    completion_tokens: int
    tokens_estimated: bool
    cached: bool
    latency: LatencyBreakdown
    removed_citations: int
    masked_pii: int
    prompt_version: str
    score: LeadScore
    masked_by_type: dict[str, int] = field(default_factory=dict)
    sentences_shown: int = 0
    """Model sentences the guard let through."""
    dropped_by_reason: dict[str, int] = field(default_factory=dict)
    """Model sentences the guard dropped, by reason (see ``guard`` and ``claims``)."""
    capped: str = ""
    """"max_chars" or "max_tokens" when the model's output was cut at that cap; else ""."""
    note_instructions_removed: int = 0
    """Sentences addressed to an assistant, taken out of the notes before the prompt."""

    @property
    def sentences_dropped(self) -> int:
        return sum(self.dropped_by_reason.values())


SummaryEvent = TextChunk | SummaryResult
