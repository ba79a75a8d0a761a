"""``SummarizeLead``: protobuf ↔ the summary pipeline. Pure conversion; domain errors propagate
to the one place that maps them to status codes."""

from __future__ import annotations

from collections.abc import AsyncIterator

from gateway.lead_codec import features_from_pb, score_to_pb
from leadgw_client.pb.leadgw.v1 import lead_service_pb2 as pb
from retrieval.summary import Summarizer, SummaryResult, TextChunk


async def summarize_lead(
    summarizer: Summarizer, tenant: str, request: pb.SummarizeLeadRequest, deadline: float
) -> AsyncIterator[pb.SummarizeLeadResponse]:
    """Text messages in order, then the final message. ``deadline`` is a monotonic instant."""
    features = features_from_pb(request.features) or None
    async for event in summarizer.summarize(
        tenant,
        request.lead_id,
        features,
        deadline=deadline,
        model=request.model_name or None,
        version=request.model_version or None,
    ):
        if isinstance(event, TextChunk):
            yield pb.SummarizeLeadResponse(text=event.text)
        else:
            yield pb.SummarizeLeadResponse(final=final_to_pb(event))


def final_to_pb(result: SummaryResult) -> pb.SummaryFinal:
    citations = []
    for citation in result.citations:
        message = pb.Citation(index=citation.index, note_id=citation.note_id)
        message.created_at.FromDatetime(citation.created_at)
        citations.append(message)
    latency = result.latency
    return pb.SummaryFinal(
        citations=citations,
        generator=result.generator,
        fallback=result.fallback,
        fallback_reason=result.fallback_reason,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        cached=result.cached,
        latency=pb.LatencyBreakdown(
            score_ms=latency.score_ms,
            retrieve_ms=latency.retrieve_ms,
            prompt_ms=latency.prompt_ms,
            first_token_ms=latency.first_token_ms,
            total_ms=latency.total_ms,
            first_shown_ms=latency.first_shown_ms,
        ),
        removed_citations=result.removed_citations,
        masked_pii=result.masked_pii,
        prompt_version=result.prompt_version,
        score=score_to_pb(result.score),
        sentences_shown=result.sentences_shown,
        sentences_dropped=result.sentences_dropped,
        dropped_by_reason=result.dropped_by_reason,
        capped=result.capped,
        note_instructions_removed=result.note_instructions_removed,
    )
