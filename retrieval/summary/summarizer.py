"""The summary pipeline: check the lead, score it, retrieve its notes, build the prompt, stream
the LLM's answer with checked citations, and fall back to a deterministic summary on any LLM
failure, inside the deadline."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from typing import Final, Literal, Protocol, TypeVar, cast

from opentelemetry import trace

from retrieval.summary.cache import CachedSummary, CacheKey, SummaryCache, feature_snapshot
from retrieval.summary.citations import CitationFilter
from retrieval.summary.claims import citations_of, strip_markers
from retrieval.summary.fallback import GUARD_NOTICE, PARTIAL_NOTICE, fallback_summary
from retrieval.summary.guard import GuardSession, GuardStats, SentenceGuard
from retrieval.summary.limits import TenantLimiter
from retrieval.summary.prompt import (
    NOTE_PROMPT_VERSION,
    PROMPT_VERSION,
    NoteRequest,
    Prompt,
    build_prompt,
)
from retrieval.summary.retrieve import retrieve_sources, search_query
from retrieval.summary.sentences import SentenceStream
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
from runtimes.llm import ChatEvent, LLMClient, LLMFailure, StreamDone, TextDelta, TokenUsage
from runtimes.llm.client import estimate_tokens
from runtimes.types import FeatureValue, LeadInput, LeadScore

T = TypeVar("T")
GUARD_FAILURES: Final = ("guard_unavailable", "guard_timeout")
"""Failures of the guard, not of the stream: no sentence held back may then be shown."""
log = logging.getLogger(__name__)

FALLBACK = "fallback"
WHOLE: Final = "whole"
PER_NOTE: Final = "per_note"
SummaryStyle = Literal["whole", "per_note"]
NOTE_MAX_TOKENS = 64
"""Per-note style: the completion limit of each call (one sentence of at most 25 words)."""
NOTE_TEMPERATURE = 0.0
"""Per-note style: restating a note needs no variety; greedy decoding makes it repeatable."""
_ENDS_SENTENCE = re.compile(r"[.!?][\"'”’)]*(?:\s*\[\d{1,4}(?:\s*,\s*\d{1,4})*\])*\s*$")


@dataclass(slots=True)
class _Generation:
    """What one LLM attempt produced, for the final result."""

    llm_text: bool = False
    usage: TokenUsage | None = None
    failure: str = ""
    first_token_ms: float = 0.0
    first_shown_ms: float = 0.0
    raw_chars: int = 0
    capped: str = ""  # "max_chars" or "max_tokens": the model's output was cut at that cap
    facts: list[str] = field(default_factory=list)
    guard: GuardStats = field(default_factory=GuardStats)
    cited: set[int] = field(default_factory=set)
    """Notes cited by the text shown (not by sentences the guard dropped)."""
    removed_citations: int = 0
    """Per-note style: markers the model wrote itself (the gateway attaches the citation)."""


class SummaryMetrics(Protocol):
    """What summaries report to metrics (the gateway's ``Metrics`` satisfies it)."""

    def record_summary_cache(self, hit: bool) -> None: ...

    def record_llm_tokens(self, input_tokens: int, output_tokens: int) -> None: ...

    def record_llm_error(self, reason: str) -> None: ...


class Summarizer:
    """Streams lead summaries. One per process; shared by every request.

    ``fallback_reserve_s`` is the part of each deadline kept back for the fallback: the LLM must
    deliver its first token and finish before ``deadline - fallback_reserve_s``.

    ``style``: ``"whole"`` asks the model for the whole summary in one call, with its own ``[n]``
    citations; ``"per_note"`` asks it for one sentence about one note per call, and the gateway
    attaches that note's ``[n]`` itself (see docs/summaries.md). Both go through the same guard.
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
        guard: SentenceGuard,
        max_chars: int = 4000,
        max_tokens: int | None = None,
        tracer: trace.Tracer | None = None,
        fallback_reserve_s: float = 0.3,
        max_reasons: int = 3,
        top_k: int = 8,
        recent_notes: int = 3,
        firm_docs: int = 2,
        clock: Callable[[], float] = time.monotonic,
        metrics: SummaryMetrics | None = None,
        style: SummaryStyle = WHOLE,
    ) -> None:
        if style not in (WHOLE, PER_NOTE):
            raise ValueError(f"summary style {style!r}: expected 'whole' or 'per_note'")
        self._style = style
        self._notes = notes
        self._metrics = metrics
        self._scorer = scorer
        self._llm = llm
        self._cache = cache
        self._limiter = limiter
        self._mask = mask_pii
        self._guard = guard
        self._max_chars = max_chars
        self._max_tokens = max_tokens
        self._tracer = tracer or trace.get_tracer("leadgw.summary")
        self._reserve = fallback_reserve_s
        self._max_reasons = max_reasons
        self._top_k = top_k
        self._recent = recent_notes
        self._firm_docs = firm_docs
        self._clock = clock

    @property
    def style(self) -> SummaryStyle:
        return self._style

    @property
    def _prompt_version(self) -> str:
        return NOTE_PROMPT_VERSION if self._style == PER_NOTE else PROMPT_VERSION

    @property
    def llm(self) -> LLMClient | None:
        """The LLM endpoint (None: fallback only); its ``breaker.state`` is for metrics."""
        return self._llm

    async def warm(self) -> None:
        """Loads, before serving, what the first summary would otherwise load while other
        requests wait on the same event loop: the guard's model and the LLM client's lazily
        imported parts. A part that fails is logged; the summaries that need it then fail over
        as they would have."""
        try:
            await self._guard.warm()
        except (OSError, RuntimeError, ValueError, LeadgwError) as err:
            log.warning("summary guard: its model did not load at start: %s", err)
        if self._llm is not None:
            await self._llm.warm()

    async def aclose(self) -> None:
        if self._llm is not None:
            await self._llm.aclose()
        await self._guard.aclose()

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

        if version is None:
            # The version ScoreLeads gives this lead (a canary's sticky share), so that the
            # summary's score is the one the advisor's list shows.
            version = self._scorer.version_for(model, tenant, lead_id)
        t0 = self._clock()
        with self._tracer.start_as_current_span("summary.score") as span:
            scores = await self._scorer.score_leads(
                [LeadInput(lead_id, features)],
                model=model,
                version=version,
                max_reasons=self._max_reasons,
                tenant=tenant,
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
            prompt_version=self._prompt_version,
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
                prompt = build_prompt(
                    lead_id, score, sources, mask=self._mask, per_note=self._style == PER_NOTE
                )
                span.set_attribute("leadgw.prompt.version", self._prompt_version)
                span.set_attribute("leadgw.pii.masked", prompt.masked_total)
                span.set_attribute(
                    "leadgw.prompt.instructions_removed", prompt.instructions_removed
                )
        t3 = self._clock()

        generation.facts = prompt.facts
        if not generation.failure and self._llm is not None:
            texts = (
                self._generate_per_note(self._llm, prompt, deadline, generation)
                if self._style == PER_NOTE
                else self._generate(self._llm, prompt, deadline, citations, generation)
            )
            async for text in texts:
                emitted.append(text)
                yield TextChunk(text)

        stats = generation.guard
        if not generation.failure and generation.llm_text and not stats.enough(self._guard.config):
            generation.failure = "guard_rejected"
        fallback = bool(generation.failure)
        reason = generation.failure
        if fallback:
            if stats.shown:
                reason = f"{generation.failure} after partial output"
            for text in self._fallback(score, sources, citations, generation, reason):
                emitted.append(text)
                yield TextChunk(text)

        usage = generation.usage or _estimated_usage(prompt, generation)
        removed_citations = citations.removed + generation.removed_citations
        if self._metrics is not None and self._llm is not None:
            if generation.failure:
                self._metrics.record_llm_error(generation.failure)
            if generation.llm_text or generation.usage is not None:
                self._metrics.record_llm_tokens(usage.prompt_tokens, usage.completion_tokens)
        llm_name = self._llm.model if self._llm else FALLBACK
        result = SummaryResult(
            citations=[
                Citation(n, sources[n - 1].note_id, sources[n - 1].created_at)
                for n in sorted(generation.cited)
            ],
            generator=llm_name if stats.shown else FALLBACK,
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
                first_shown_ms=generation.first_shown_ms,
            ),
            removed_citations=removed_citations,
            masked_pii=prompt.masked_total,
            prompt_version=self._prompt_version,
            score=score,
            masked_by_type=prompt.masked,
            sentences_shown=stats.shown,
            dropped_by_reason=dict(stats.dropped),
            capped=generation.capped,
            note_instructions_removed=prompt.instructions_removed,
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
        """Stream the LLM's text, cut at the caps, through the citation check and the sentence
        guard; yield the facts block before the first shown sentence, then each shown sentence.
        Record the outcome in ``generation``. Never raises an LLM failure: it becomes
        ``generation.failure``."""
        until = deadline - self._reserve
        span = self._chat_span(llm, llm.config.max_tokens)
        # Embedding the notes for the guard overlaps the wait for the model's first token.
        session_task = asyncio.ensure_future(self._guard_session(prompt))
        sentences = SentenceStream()
        cap = _OutputCap(self._max_chars, self._max_tokens or llm.config.max_tokens)
        started = self._clock()
        # Not made current: the span stays open across yields, where context cannot be kept.
        try:
            # Closed explicitly: leaving the loop at a cap must end the HTTP stream now, not at GC.
            stream = cast(
                AsyncGenerator[ChatEvent, None],
                llm.stream_chat(prompt.messages, first_token_by=until, finish_by=until),
            )
            async with aclosing(stream) as events:
                async for event in events:
                    if isinstance(event, TextDelta):
                        if not generation.llm_text:
                            generation.llm_text = True
                            generation.first_token_ms = _ms(self._clock() - started)
                            span.set_attribute(
                                "gen_ai.response.time_to_first_chunk",
                                generation.first_token_ms / 1000,
                            )
                            span.add_event("gen_ai.first_token")
                        text, generation.capped = cap.take(event.text)
                        generation.raw_chars += len(text)
                        for sentence in sentences.feed(citations.feed(text)):
                            shown = await self._show(
                                sentence, session_task, generation, started, until
                            )
                            if shown:
                                yield shown
                        if generation.capped:
                            # The endpoint ignored max_tokens, or writes on: stop reading.
                            span.set_attribute("leadgw.summary.capped", generation.capped)
                            break
                    elif isinstance(event, StreamDone):
                        generation.usage = event.usage
                        span.set_attribute("gen_ai.usage.input_tokens", event.usage.prompt_tokens)
                        span.set_attribute(
                            "gen_ai.usage.output_tokens", event.usage.completion_tokens
                        )
                        span.set_attribute("gen_ai.response.finish_reasons", [event.finish_reason])
                        span.set_attribute("leadgw.llm.tokens_estimated", event.usage.estimated)
                        span.set_attribute("leadgw.llm.attempts", event.attempts)
            # A clean end: the last sentence needs no full stop. After a cap, only a whole one.
            last = await self._last_sentence(
                sentences,
                citations,
                session_task,
                generation,
                started,
                until,
                whole=bool(generation.capped),
            )
            if last:
                yield last
        except LLMFailure as failure:
            log.info("LLM failed (%s): %s", failure.reason, failure.detail)
            generation.failure = failure.reason
            span.set_attribute("error.type", failure.reason)
            span.set_status(trace.Status(trace.StatusCode.ERROR, failure.reason))
            if generation.llm_text and failure.reason not in GUARD_FAILURES:
                # The stream broke: a sentence it finished before breaking is still checked.
                last = await self._last_sentence(
                    sentences, citations, session_task, generation, started, until, whole=True
                )
                if last:
                    yield last
        finally:
            if not session_task.done():
                session_task.cancel()
            elif not session_task.cancelled() and session_task.exception() is None:
                generation.guard = session_task.result().stats
                span.set_attribute("leadgw.guard.shown", generation.guard.shown)
                span.set_attribute("leadgw.guard.dropped", generation.guard.dropped_total)
            span.set_attribute("leadgw.llm.breaker_state", llm.breaker.state.value)
            span.end()

    async def _generate_per_note(
        self, llm: LLMClient, prompt: Prompt, deadline: float, generation: _Generation
    ) -> AsyncIterator[str]:
        """The per-note style: one call per note in ``prompt.note_requests``, one sentence from
        each, cited by the gateway with that note's number, checked by the same guard, shown as
        each call ends. Records the outcome in ``generation``; an LLM failure ends the calls and
        becomes ``generation.failure`` (a sentence already shown stays shown)."""
        if not prompt.note_requests:
            generation.failure = "nothing_to_summarise"
            return
        until = deadline - self._reserve
        session_task = asyncio.ensure_future(self._guard_session(prompt))
        started = self._clock()
        prompt_tokens = completion_tokens = 0
        estimated = False
        chars_left = self._max_chars
        try:
            for request in prompt.note_requests:
                reply = await self._note_sentence(
                    llm, request, until, chars_left, generation, started
                )
                generation.llm_text = True
                prompt_tokens += reply.usage.prompt_tokens
                completion_tokens += reply.usage.completion_tokens
                estimated = estimated or reply.usage.estimated
                chars_left -= reply.chars
                if reply.capped and generation.capped != "max_chars":
                    generation.capped = reply.capped
                if not reply.sentence:
                    (await session_task).drop(reply.dropped)
                else:
                    shown = await self._show(
                        reply.sentence, session_task, generation, started, until
                    )
                    if shown:
                        yield shown
                if chars_left <= 0:
                    generation.capped = "max_chars"
                    break
        except LLMFailure as failure:
            log.info("LLM failed (%s): %s", failure.reason, failure.detail)
            generation.failure = failure.reason
        finally:
            if generation.llm_text:
                generation.usage = TokenUsage(prompt_tokens, completion_tokens, estimated)
            if not session_task.done():
                session_task.cancel()
            elif not session_task.cancelled() and session_task.exception() is None:
                generation.guard = session_task.result().stats

    async def _note_sentence(
        self,
        llm: LLMClient,
        request: NoteRequest,
        until: float,
        chars_left: int,
        generation: _Generation,
        started: float,
    ) -> _NoteReply:
        """One per-note call: the first sentence the model writes, with the note's citation
        attached, or "" and the reason it has none. Raises ``LLMFailure``."""
        max_tokens = min(NOTE_MAX_TOKENS, llm.config.max_tokens)
        span = self._chat_span(llm, max_tokens, {"leadgw.summary.note": request.n})
        sentences = SentenceStream()
        cap = _OutputCap(chars_left, max_tokens)
        chars = 0
        first = ""
        capped = ""
        usage: TokenUsage | None = None
        try:
            stream = cast(
                AsyncGenerator[ChatEvent, None],
                llm.stream_chat(
                    request.messages,
                    first_token_by=until,
                    finish_by=until,
                    max_tokens=max_tokens,
                    temperature=NOTE_TEMPERATURE,
                ),
            )
            async with aclosing(stream) as events:
                async for event in events:
                    if isinstance(event, TextDelta):
                        if not generation.first_token_ms:
                            generation.first_token_ms = _ms(self._clock() - started)
                            span.add_event("gen_ai.first_token")
                        text, capped = cap.take(event.text)
                        chars += len(text)
                        first = _first_sentence(sentences.feed(text))
                        if first or capped:
                            break  # one sentence is all that was asked for: stop the model
                    elif isinstance(event, StreamDone):
                        usage = event.usage
                        span.set_attribute("gen_ai.response.finish_reasons", [event.finish_reason])
                        if event.finish_reason == "length":
                            capped = "max_tokens"
            if chars:
                # Closing the stream early leaves the breaker without a verdict, but the
                # endpoint answered: that is a success.
                llm.breaker.record_success()
            if not first:
                rest = sentences.flush()
                if rest and (not capped or _ENDS_SENTENCE.search(rest)):
                    first = rest if not rest.endswith(":") else ""
        except LLMFailure as failure:
            span.set_attribute("error.type", failure.reason)
            span.set_status(trace.Status(trace.StatusCode.ERROR, failure.reason))
            raise
        finally:
            span.set_attribute("leadgw.llm.breaker_state", llm.breaker.state.value)
            span.end()
        if usage is None:  # the stream was closed early, or the endpoint sent no usage
            prompt_text = "".join(m.content for m in request.messages)
            usage = TokenUsage(
                estimate_tokens(prompt_text) + 4 * len(request.messages),
                estimate_tokens_of(chars),
                estimated=True,
            )
        if not first:
            return _NoteReply("", "cut_off" if capped else "no_sentence", chars, usage, capped)
        body = strip_lead_in(strip_markers(first))
        generation.removed_citations += len(citations_of(first))
        return _NoteReply(cite(body, request.n), "", chars, usage, capped)

    def _chat_span(
        self, llm: LLMClient, max_tokens: int, extra: dict[str, int] | None = None
    ) -> trace.Span:
        """The client span of one LLM call (OpenTelemetry's gen_ai conventions)."""
        return self._tracer.start_span(
            f"chat {llm.model}",
            kind=trace.SpanKind.CLIENT,
            attributes={
                "gen_ai.system": "openai",
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": llm.model,
                "gen_ai.request.max_tokens": max_tokens,
                "server.address": llm.endpoint,
                **(extra or {}),
            },
        )

    async def _last_sentence(
        self,
        sentences: SentenceStream,
        citations: CitationFilter,
        session_task: asyncio.Future[GuardSession],
        generation: _Generation,
        started: float,
        until: float,
        *,
        whole: bool,
    ) -> str:
        """The text held back at the end of the stream, checked as a sentence. With ``whole``,
        only if it ends like one: a sentence cut off part way cannot be checked, and is dropped."""
        rest = (sentences.flush() + " " + citations.flush()).strip()
        if not rest:
            return ""
        if whole and not _ENDS_SENTENCE.search(rest):
            (await self._guard_within(until, session_task)).drop("cut_off")
            return ""
        return await self._show(rest, session_task, generation, started, until)

    async def _guard_within(self, until: float, step: Awaitable[T]) -> T:
        """``step`` of the sentence guard, bounded by ``until`` (a ``clock()`` instant): a guard
        that cannot finish in time (its model's thread starved of CPU: ``guard_embed_priority``
        idle on a saturated machine) ends the summary in the marked fallback before its deadline
        instead of holding it past it."""
        try:
            async with asyncio.timeout(max(0.0, until - self._clock())):
                return await step
        except TimeoutError:
            raise LLMFailure("guard_timeout", "the sentence guard did not finish in time") from None

    async def _guard_session(self, prompt: Prompt) -> GuardSession:
        try:
            return await self._guard.session(prompt.sources, prompt.facts)
        except (OSError, RuntimeError, ValueError) as err:
            # No sentence can be checked, so none may be shown: the marked fallback, as for any
            # failure of the model's side.
            raise LLMFailure("guard_unavailable", repr(err)) from err

    async def _show(
        self,
        sentence: str,
        session_task: asyncio.Future[GuardSession],
        generation: _Generation,
        started: float,
        until: float,
    ) -> str:
        """The text to send for one model sentence: "" when the guard drops it; the facts block
        first when it is the first sentence shown."""
        session = await self._guard_within(until, session_task)
        verdict = await self._guard_within(until, session.check(sentence))
        if not verdict.shown:
            log.debug("guard dropped a sentence (%s)", verdict.reason)
            return ""
        generation.cited |= citations_of(sentence)
        if session.stats.shown == 1:
            generation.first_shown_ms = _ms(self._clock() - started)
            return "\n".join(generation.facts) + "\n\n" + sentence
        return " " + sentence

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
            citations.flush()  # whatever was held back belongs to text the guard did not show
            citations = CitationFilter(range(1, len(sources) + 1))
            if generation.guard.shown:
                # Text already shown cannot be taken back: close it honestly, then the fallback.
                stats = generation.guard
                if generation.failure == "guard_rejected":
                    total = stats.shown + stats.dropped_total
                    head = GUARD_NOTICE.format(dropped=stats.dropped_total, total=total)
                else:
                    head = PARTIAL_NOTICE.format(reason=generation.failure)
                body = fallback_summary(score, sources, recent=self._recent, header=False)
            else:
                head, body = "", fallback_summary(score, sources, recent=self._recent)
            lines = body.splitlines(keepends=True)
            chunks = [citations.feed(head + lines[0]) if lines else citations.feed(head)]
            chunks += [citations.feed(line) for line in lines[1:]]
            chunks.append(citations.flush())
            generation.cited |= citations.cited
        return [c for c in chunks if c]


@dataclass(frozen=True, slots=True)
class _NoteReply:
    sentence: str
    """The model's sentence with the gateway's citation; "" when it wrote none."""
    dropped: str
    """Why there is no sentence: "cut_off" (a cap cut it) or "no_sentence"."""
    chars: int
    usage: TokenUsage
    capped: str = ""
    """The cap that cut the model's reply ("max_tokens", "max_chars"), or ""."""


_NOTE_LEAD_IN = re.compile(
    r"^\s*(?:(?:the|this)\s+note\s+(?:says|states|reads|mentions)(?:\s+that)?"
    r"|note\s*\([^()]{0,80}\))\s*[,:]?\s*",
    re.I,
)


def strip_lead_in(sentence: str) -> str:
    """Without a lead-in that names the note rather than the client ('The note says, "…',
    'Note (call, 2 March 2026): "…'): small models often open with one. What is left is what the
    guard checks and what is shown."""
    return _NOTE_LEAD_IN.sub("", sentence, count=1)


def _first_sentence(sentences: list[str]) -> str:
    """The first sentence that says something: a lead-in ("Here is the sentence:") is skipped."""
    for sentence in sentences:
        if not sentence.rstrip().endswith(":"):
            return sentence
    return ""


def cite(sentence: str, n: int) -> str:
    """``sentence`` with ``[n]`` before its final full stop (one added if it has none)."""
    body = sentence.strip().strip("\"'“”")
    end = re.search(r"[.!?]+[\"'”’)]*$", body)
    if end is None:
        return f"{body} [{n}]."
    return f"{body[: end.start()].rstrip()} [{n}]{body[end.start() :]}"


class _OutputCap:
    """The gateway's own bound on what a model may write, whatever the endpoint does with
    ``max_tokens``: characters, and tokens counted as streamed chunks or estimated from
    characters, whichever is more."""

    def __init__(self, max_chars: int, max_tokens: int) -> None:
        self._max_chars = max_chars
        self._max_tokens = max_tokens
        self._chars = 0
        self._chunks = 0

    def take(self, text: str) -> tuple[str, str]:
        """The part of ``text`` within the caps, and the cap reached ("" if none)."""
        self._chunks += 1
        room = self._max_chars - self._chars
        if len(text) > room:
            self._chars = self._max_chars
            return text[: max(0, room)], "max_chars"
        self._chars += len(text)
        if max(self._chunks, estimate_tokens_of(self._chars)) > self._max_tokens:
            return text, "max_tokens"
        return text, ""


def estimate_tokens_of(chars: int) -> int:
    return -(-chars // 4)


def _estimated_usage(prompt: Prompt, generation: _Generation) -> TokenUsage:
    """Token counts when the endpoint gave none (or the stream was cut before it did): nothing
    if no prompt was sent."""
    if not prompt.messages:
        return TokenUsage(0, 0, estimated=False)
    prompt_tokens = sum(estimate_tokens(m.content) + 4 for m in prompt.messages)
    completion = estimate_tokens_of(generation.raw_chars) if generation.llm_text else 0
    return TokenUsage(prompt_tokens, completion, estimated=True)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)
