"""Lead summaries: grounded in the lead's notes, cited, streamed, with a marked fallback.
Transport-free (no gRPC)."""

from runtimes.summary.cache import SummaryCache
from runtimes.summary.factory import llm_from_settings, summarizer_from_settings
from runtimes.summary.limits import TenantLimiter
from runtimes.summary.prompt import PROMPT_VERSION
from runtimes.summary.summarizer import FALLBACK, Summarizer
from runtimes.summary.types import (
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
