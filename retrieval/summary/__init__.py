"""Lead summaries: grounded in the lead's notes, cited, streamed, with a marked fallback.
Transport-free (no gRPC)."""

from retrieval.summary.cache import SummaryCache
from retrieval.summary.factory import llm_from_settings, summarizer_from_settings
from retrieval.summary.limits import TenantLimiter
from retrieval.summary.prompt import PROMPT_VERSION
from retrieval.summary.summarizer import FALLBACK, Summarizer
from retrieval.summary.types import (
    Citation,
    LatencyBreakdown,
    LeadScorer,
    SummaryEvent,
    SummaryResult,
    TextChunk,
)

__all__ = [
    "FALLBACK",
    "PROMPT_VERSION",
    "Citation",
    "LatencyBreakdown",
    "LeadScorer",
    "Summarizer",
    "SummaryCache",
    "SummaryEvent",
    "SummaryResult",
    "TenantLimiter",
    "TextChunk",
    "llm_from_settings",
    "summarizer_from_settings",
]
