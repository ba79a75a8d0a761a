"""The summary pipeline: check the lead, score it, retrieve its notes, build the prompt, stream
the LLM's answer with checked citations, and fall back to a deterministic summary on any LLM
failure, inside the deadline."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from opentelemetry import trace

from retrieval.summary.cache import CachedSummary, CacheKey, SummaryCache, feature_snapshot
from retrieval.summary.citations import CitationFilter
from retrieval.summary.fallback import PARTIAL_NOTICE, fallback_summary
from retrieval.summary.limits import TenantLimiter
from retrieval.summary.prompt import PROMPT_VERSION, Prompt, build_prompt
from retrieval.summary.retrieve import retrieve_sources, search_query
from retrieval.summary.types import (
    Citation,
    LatencyBreakdown,
    LeadScorer,
    SummaryEvent,
    SummaryResult,
    TextChunk,
)
from retrieval.types import NoteRecord, NotesReader
from runtimes.errors import DeadlineExceeded, InvalidInput, LeadgwError, NotFound
from runtimes.llm import LLMClient, LLMFailure, StreamDone, TextDelta, TokenUsage
from runtimes.llm.client import estimate_tokens
from runtimes.types import FeatureValue, LeadInput, LeadScore

log = logging.getLogger(__name__)

FALLBACK = "fallback"


@dataclass(slots=True)
class _Generation:
    """What one LLM attempt produced, for the final result."""

    llm_text: bool = False
    usage: TokenUsage | None = None
    failure: str = ""
    first_token_ms: float = 0.0


class SummaryMetrics(Protocol):
    """What summaries report to metrics (the gateway's ``Metrics`` satisfies it)."""

    def record_summary_cache(self, hit: bool) -> None: ...

    def record_llm_tokens(self, input_tokens: int, output_tokens: int) -> None: ...

    def record_llm_error(self, reason: str) -> None: ...


class Summarizer:
    """Streams lead summaries. One per process; shared by every request.

    ``fallback_reserve_s`` is the part of each deadline kept back for the fallback: the LLM must
    deliver its first token and finish before ``deadline - fallback_reserve_s``.
    """

    def __init__(
        self,
        *,
        notes: NotesReader,
        scorer: LeadScorer,
        llm: LLMClient | None,
        cache: SummaryCache,
        limiter: TenantLimiter,
        mask_pii: bool,
        tracer: trace.Tracer | None = None,
        fallback_reserve_s: float = 0.3,
        max_reasons: int = 3,
        top_k: int = 8,
        recent_notes: int = 3,
        firm_docs: int = 2,
        clock: Callable[[], float] = time.monotonic,
        metrics: SummaryMetrics | None = None,
    ) -> None:
        self._notes = notes
        self._metrics = metrics
        self._scorer = scorer
        self._llm = llm
        self._cache = cache
        self._limiter = limiter
        self._mask = mask_pii
        self._tracer = tracer or trace.get_tracer("leadgw.summary")
        self._reserve = fallback_reserve_s
        self._max_reasons = max_reasons
        self._top_k = top_k
        self._recent = recent_notes
        self._firm_docs = firm_docs
        self._clock = clock

    @property
    def llm(self) -> LLMClient | None:
        """The LLM endpoint (None: fallback only); its ``breaker.state`` is for metrics."""
        return self._llm

    async def aclose(self) -> None:
        if self._llm is not None:
            await self._llm.aclose()

    async def summarize(
        self,
        tenant: str,
        lead_id: str,
        features: dict[str, FeatureValue] | None,
        *,
        deadline: float,
        model: str | None = None,
        version: str | None = None,
    ) -> AsyncIterator[SummaryEvent]:
        """Yield ``TextChunk``s, then one ``SummaryResult``. ``deadline`` is a ``clock()``
        instant. Raises NotFound (unknown lead, or another tenant's), InvalidInput (no features
        and no stored profile), ResourceExhausted (tenant limit), DeadlineExceeded (too short)."""
        started = self._clock()
        if deadline - started <= self._reserve:
            raise DeadlineExceeded("the deadline leaves no time to write a summary")
        with self._limiter.slot(tenant):
            async for event in self._summarize(
                tenant, lead_id, features, deadline, model, version, started
            ):
                yield event

    async def _summarize(
        self,
        tenant: str,
        lead_id: str,
        features: dict[str, FeatureValue] | None,
        deadline: float,
        model: str | None,
        version: str | None,
        started: float,
    ) -> AsyncIterator[SummaryEvent]:
        # Same answer for "no such lead" and "another tenant's lead": never confirm it exists.
        if not await self._notes.lead_exists(tenant, lead_id):
            raise NotFound(f"lead {lead_id!r} not found")
        if not features:
            features = await self._notes.lead_profile(tenant, lead_id)
        if not features:
            raise InvalidInput(f"lead {lead_id!r} has no stored profile: send its features")

        t0 = self._clock()
        with self._tracer.start_as_current_span("summary.score") as span:
            scores = await self._scorer.score_leads(
                [LeadInput(lead_id, features)],
                model=model,
                version=version,
                max_reasons=self._max_reasons,
            )
            score = scores[0]
            span.set_attribute("leadgw.score.probability", score.probability)
        t1 = self._clock()

        sources: list[NoteRecord] = []
        notes_version = ""
        retrieval_failure = ""
        with self._tracer.start_as_current_span("summary.retrieve") as span:
            try:
                async with asyncio.timeout(max(0.0, deadline - self._reserve - t1)):
                    sources, notes_version = await asyncio.gather(
                        retrieve_sources(
                            self._notes,
                            tenant,
                            lead_id,
                            search_query(score),
                            top_k=self._top_k,
                            recent=self._recent,
                            firm_docs=self._firm_docs,
                        ),
                        self._notes.lead_notes_version(tenant, lead_id),
                    )
            except TimeoutError:
                retrieval_failure = "retrieval_timeout"
            except LeadgwError as err:  # the store refused or is down: the fallback says so
                log.warning("summary retrieval failed: %s", err)
                span.record_exception(err)
                retrieval_failure = "retrieval_failed"
            except Exception as err:
                # A bug, not an outage. The advisor still gets the marked fallback, but the
                # failure is logged with its traceback and recorded on the span, never hidden.
                log.exception("summary retrieval raised unexpectedly")
                span.record_exception(err)
                span.set_status(trace.Status(trace.StatusCode.ERROR, type(err).__name__))
                retrieval_failure = "retrieval_error"
            span.set_attribute("leadgw.retrieve.notes", len(sources))
        t2 = self._clock()

        key = CacheKey(
            tenant=tenant,
            lead_id=lead_id,
            features=feature_snapshot(features),
            note_ids=tuple(n.note_id for n in sources),
            notes_version=notes_version,
            prompt_version=PROMPT_VERSION,
            llm_model=self._llm.model if self._llm else "",
            score_model=model or "",
            score_version=version or "",
        )
        if not retrieval_failure and self._llm is not None:
            with self._tracer.start_as_current_span("summary.cache_lookup") as span:
                hit = self._cache.get(key)
                span.set_attribute("leadgw.cache.hit", hit is not None)
            if self._metrics is not None:
                self._metrics.record_summary_cache(hit is not None)
            if hit is not None:
                for chunk in hit.chunks:
                    yield TextChunk(chunk)
                latency = LatencyBreakdown(
                    score_ms=_ms(t1 - t0),
                    retrieve_ms=_ms(t2 - t1),
                    total_ms=_ms(self._clock() - started),
                )
                yield replace(hit.result, cached=True, latency=latency, score=score)
                return

        citations = CitationFilter(range(1, len(sources) + 1))
        emitted: list[str] = []
        generation = _Generation(
            failure=retrieval_failure or ("" if self._llm else "not_configured")
        )
        prompt = Prompt([])
        if not generation.failure and self._llm is not None:
            with self._tracer.start_as_current_span("summary.prompt") as span:
                prompt = build_prompt(lead_id, score, sources, mask=self._mask)
                span.set_attribute("leadgw.prompt.version", PROMPT_VERSION)
                span.set_attribute("leadgw.pii.masked", prompt.masked_total)
        t3 = self._clock()

        if not generation.failure and self._llm is not None:
            async for text in self._generate(self._llm, prompt, deadline, citations, generation):
                emitted.append(text)
                yield TextChunk(text)

        fallback = bool(generation.failure)
        reason = generation.failure
        if fallback:
            if generation.llm_text:
                reason = f"{generation.failure} after partial output"
            for text in self._fallback(score, sources, citations, generation, reason):
                emitted.append(text)
                yield TextChunk(text)
        else:
            tail = citations.flush()
            if tail:
                emitted.append(tail)
                yield TextChunk(tail)

        usage = generation.usage or _estimated_usage(prompt, generation, emitted)
        if self._metrics is not None and self._llm is not None:
            if generation.failure:
                self._metrics.record_llm_error(generation.failure)
            if generation.llm_text or generation.usage is not None:
                self._metrics.record_llm_tokens(usage.prompt_tokens, usage.completion_tokens)
        llm_name = self._llm.model if self._llm else FALLBACK
        result = SummaryResult(
            citations=[
                Citation(n, sources[n - 1].note_id, sources[n - 1].created_at)
                for n in sorted(citations.cited)
            ],
            generator=llm_name if generation.llm_text else FALLBACK,
            fallback=fallback,
            fallback_reason=reason,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            tokens_estimated=usage.estimated,
            cached=False,
            latency=LatencyBreakdown(
                score_ms=_ms(t1 - t0),
                retrieve_ms=_ms(t2 - t1),
                prompt_ms=_ms(t3 - t2),
                first_token_ms=generation.first_token_ms,
                total_ms=_ms(self._clock() - started),
            ),
            removed_citations=citations.removed,
            masked_pii=prompt.masked_total,
            prompt_version=PROMPT_VERSION,
            score=score,
            masked_by_type=prompt.masked,
        )
        if not fallback:
            self._cache.put(key, CachedSummary(tuple(emitted), result))
        yield result

    async def _generate(
        self,
        llm: LLMClient,
        prompt: Prompt,
        deadline: float,
        citations: CitationFilter,
        generation: _Generation,
    ) -> AsyncIterator[str]:
        """Stream the LLM's text through the citation check; record the outcome in
        ``generation``. Never raises an LLM failure: it becomes ``generation.failure``."""
        until = deadline - self._reserve
        span = self._tracer.start_span(
            f"chat {llm.model}",
            kind=trace.SpanKind.CLIENT,
            attributes={
                "gen_ai.system": "openai",
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": llm.model,
                "gen_ai.request.max_tokens": llm.config.max_tokens,
                "server.address": llm.endpoint,
            },
        )
        # Not made current: the span stays open across yields, where context cannot be kept.
        started = self._clock()
        try:
            async for event in llm.stream_chat(
                prompt.messages, first_token_by=until, finish_by=until
            ):
                if isinstance(event, TextDelta):
                    if not generation.llm_text:
                        generation.llm_text = True
                        generation.first_token_ms = _ms(self._clock() - started)
                        span.set_attribute(
                            "gen_ai.response.time_to_first_chunk",
                            generation.first_token_ms / 1000,
                        )
                        span.add_event("gen_ai.first_token")
                    text = citations.feed(event.text)
                    if text:
                        yield text
                elif isinstance(event, StreamDone):
                    generation.usage = event.usage
                    span.set_attribute("gen_ai.usage.input_tokens", event.usage.prompt_tokens)
                    span.set_attribute("gen_ai.usage.output_tokens", event.usage.completion_tokens)
                    span.set_attribute("gen_ai.response.finish_reasons", [event.finish_reason])
                    span.set_attribute("leadgw.llm.tokens_estimated", event.usage.estimated)
                    span.set_attribute("leadgw.llm.attempts", event.attempts)
        except LLMFailure as failure:
            log.info("LLM failed (%s): %s", failure.reason, failure.detail)
            generation.failure = failure.reason
            span.set_attribute("error.type", failure.reason)
            span.set_status(trace.Status(trace.StatusCode.ERROR, failure.reason))
        finally:
            span.set_attribute("leadgw.llm.breaker_state", llm.breaker.state.value)
            span.end()

    def _fallback(
        self,
        score: LeadScore,
        sources: Sequence[NoteRecord],
        citations: CitationFilter,
        generation: _Generation,
        reason: str,
    ) -> list[str]:
        """The fallback text as chunks, through the same citation check as the LLM's text."""
        with self._tracer.start_as_current_span("summary.fallback") as span:
            span.add_event("fallback", {"reason": reason})
            span.set_attribute("leadgw.fallback.reason", reason)
            if generation.llm_text:
                # Text already shown cannot be taken back: close it honestly, then the fallback.
                head = citations.flush().rstrip() + PARTIAL_NOTICE.format(reason=generation.failure)
                body = fallback_summary(score, sources, recent=self._recent, header=False)
            else:
                citations.flush()  # at most held-back whitespace; nothing was shown
                head, body = "", fallback_summary(score, sources, recent=self._recent)
            lines = body.splitlines(keepends=True)
            chunks = [citations.feed(head + lines[0]) if lines else citations.feed(head)]
            chunks += [citations.feed(line) for line in lines[1:]]
            chunks.append(citations.flush())
        return [c for c in chunks if c]


def _estimated_usage(prompt: Prompt, generation: _Generation, emitted: list[str]) -> TokenUsage:
    """Token counts when the endpoint gave none: nothing if no prompt was sent."""
    if not prompt.messages:
        return TokenUsage(0, 0, estimated=False)
    prompt_tokens = sum(estimate_tokens(m.content) + 4 for m in prompt.messages)
    completion = estimate_tokens("".join(emitted)) if generation.llm_text else 0
    return TokenUsage(prompt_tokens, completion, estimated=True)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)
