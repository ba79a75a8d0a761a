"""Build the summary pipeline from the gateway's settings (read through a protocol, so that
``runtimes`` does not import ``gateway``)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Literal, Protocol

from opentelemetry import trace

from retrieval.embedder import Embedder, OnnxEmbedder
from retrieval.summary.cache import SummaryCache
from retrieval.summary.guard import SentenceGuard
from retrieval.summary.limits import TenantLimiter
from retrieval.summary.summarizer import (
    PER_NOTE,
    WHOLE,
    Summarizer,
    SummaryMetrics,
    SummaryStyle,
)
from retrieval.summary.types import LeadScorer
from retrieval.thread_priority import ThreadPriority
from retrieval.types import NotesReader
from runtimes.llm import CircuitBreaker, LLMClient, LLMConfig, PiiMode, should_mask


class SummarySettings(Protocol):
    @property
    def llm_base_url(self) -> str | None: ...
    @property
    def llm_model(self) -> str: ...
    @property
    def llm_api_key(self) -> str: ...
    @property
    def llm_connect_timeout_s(self) -> float: ...
    @property
    def llm_read_timeout_s(self) -> float: ...
    @property
    def llm_http_client(self) -> Literal["aiohttp", "httpx"]: ...
    @property
    def llm_max_retries(self) -> int: ...
    @property
    def llm_max_tokens(self) -> int: ...
    @property
    def pii_masking(self) -> PiiMode: ...
    @property
    def summaries_per_tenant(self) -> int: ...
    @property
    def summary_cache_entries(self) -> int: ...
    @property
    def summary_max_chars(self) -> int: ...
    @property
    def summary_style(self) -> str: ...
    @property
    def breaker_failures(self) -> int: ...
    @property
    def breaker_reset_s(self) -> float: ...
    @property
    def guard_embed_priority(self) -> ThreadPriority: ...


SMALL_LOCAL_MODELS = ("smollm2", "gemma-3-270m", "gemma3-270m")
"""Model names (parts of) that ``summary_style = "auto"`` asks note by note: measured on the
evaluation set, they write no usable whole summary (docs/perf/2026-11-28-summary-quality-2.md)."""


def resolve_style(style: str, model: str) -> SummaryStyle:
    """``auto``: per_note for the small local models, whole for any other."""
    if style == "auto":
        small = any(part in model.lower() for part in SMALL_LOCAL_MODELS)
        return PER_NOTE if small else WHOLE
    if style == PER_NOTE:
        return PER_NOTE
    if style == WHOLE:
        return WHOLE
    raise ValueError(f"summary_style {style!r}: expected auto, whole or per_note")


def llm_from_settings(settings: SummarySettings) -> LLMClient | None:
    """None when no endpoint is configured: every summary is then the marked fallback."""
    if not settings.llm_base_url:
        return None
    return LLMClient(
        LLMConfig(
            base_url=settings.llm_base_url,
            model=settings.llm_model,
            api_key=settings.llm_api_key,
            connect_timeout_s=settings.llm_connect_timeout_s,
            read_timeout_s=settings.llm_read_timeout_s,
            max_retries=settings.llm_max_retries,
            max_tokens=settings.llm_max_tokens,
            http_client=settings.llm_http_client,
        ),
        breaker=CircuitBreaker(settings.breaker_failures, settings.breaker_reset_s),
    )


def summarizer_from_settings(
    settings: SummarySettings,
    notes: NotesReader,
    scorer: LeadScorer,
    *,
    tracer: trace.Tracer | None = None,
    metrics: SummaryMetrics | None = None,
    tenant_limit: Callable[[str], int | None] | None = None,
    on_tenant_refused: Callable[[str], None] | None = None,
    guard_embedder: Embedder | None = None,
) -> Summarizer:
    """One per process. Close it (``aclose()``) on shutdown.

    ``tenant_limit``: a tenant's own concurrent-summary limit, None for the settings' default;
    ``on_tenant_refused``: told of each summary refused by that limit; ``guard_embedder``: the
    guard's model when the caller already holds it (the caller's to close; see
    :func:`~retrieval.summary.guard.shared_guard_model`), None to load one for the guard."""
    return Summarizer(
        notes=notes,
        scorer=scorer,
        llm=llm_from_settings(settings),
        cache=SummaryCache(settings.summary_cache_entries),
        limiter=TenantLimiter(settings.summaries_per_tenant, tenant_limit, on_tenant_refused),
        mask_pii=should_mask(settings.pii_masking, settings.llm_base_url),
        # The local MiniLM whatever embeddings_url says: the guard's threshold is set for it.
        guard=SentenceGuard(
            embedder=guard_embedder,
            open_embedder=partial(OnnxEmbedder.open, thread_priority=settings.guard_embed_priority),
        ),
        max_chars=settings.summary_max_chars,
        max_tokens=settings.llm_max_tokens,
        tracer=tracer,
        metrics=metrics,
        style=resolve_style(settings.summary_style, settings.llm_model),
    )
