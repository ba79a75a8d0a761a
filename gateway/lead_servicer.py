"""``leadgw.v1.LeadService``: thin — convert, call the core, convert back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc

from gateway import lead_codec, notes_rpc, summary_rpc
from gateway.auth import current_caller
from gateway.pb.leadgw.v1 import lead_service_pb2 as pb
from gateway.pb.leadgw.v1 import lead_service_pb2_grpc as pb_grpc
from retrieval.notes import NotesService
from runtimes.errors import Unavailable
from runtimes.scoring import LeadScorer, is_heavy
from runtimes.summary import Summarizer


def deadline_of(context: grpc.aio.ServicerContext) -> float | None:
    """The client's deadline as a ``time.monotonic()`` instant, or None if it sent none."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


class LeadServicer(pb_grpc.LeadServiceServicer):
    def __init__(
        self,
        scorer: LeadScorer,
        *,
        default_max_reasons: int,
        notes: NotesService | None = None,
        summarizer: Summarizer | None = None,
        summary_deadline_s: float = 20.0,
    ) -> None:
        self._scorer = scorer
        self._default_max_reasons = default_max_reasons
        self._notes = notes
        self._summarizer = summarizer
        self._summary_deadline_s = summary_deadline_s

    async def ScoreLeads(
        self, request: pb.ScoreLeadsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ScoreLeadsResponse:
        heavy = is_heavy(len(request.leads))
        if heavy:
            leads = await asyncio.to_thread(lead_codec.leads_from_pb, request.leads)
        else:
            leads = lead_codec.leads_from_pb(request.leads)
        scores = await self._scorer.score_leads(
            leads,
            model=request.model_name or None,
            version=request.model_version or None,
            max_reasons=request.max_reasons or self._default_max_reasons,
            deadline=deadline_of(context),
        )
        if heavy:
            return await asyncio.to_thread(lead_codec.scores_to_pb, scores)
        return lead_codec.scores_to_pb(scores)

    async def IndexNotes(
        self, request: pb.IndexNotesRequest, context: grpc.aio.ServicerContext
    ) -> pb.IndexNotesResponse:
        return await notes_rpc.index_notes(self._require_notes(), current_caller().tenant, request)

    async def DeleteNotes(
        self, request: pb.DeleteNotesRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteNotesResponse:
        return await notes_rpc.delete_notes(self._require_notes(), current_caller().tenant, request)

    async def SearchNotes(
        self, request: pb.SearchNotesRequest, context: grpc.aio.ServicerContext
    ) -> pb.SearchNotesResponse:
        return await notes_rpc.search_notes(self._require_notes(), current_caller().tenant, request)

    async def SummarizeLead(
        self, request: pb.SummarizeLeadRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.SummarizeLeadResponse]:
        if self._summarizer is None:
            raise Unavailable("summaries are not configured on this server")
        deadline = deadline_of(context) or time.monotonic() + self._summary_deadline_s
        async for message in summary_rpc.summarize_lead(
            self._summarizer, current_caller().tenant, request, deadline
        ):
            yield message

    def _require_notes(self) -> NotesService:
        if self._notes is None:
            raise Unavailable("the notes store is not available on this server")
        return self._notes
