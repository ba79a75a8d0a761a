"""``leadgw.v1.LeadService``: thin — convert, call the core, convert back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import numpy as np

from gateway import lead_codec, notes_rpc, summary_rpc
from gateway.auth import current_caller
from gateway.summary_process import SummaryRelay
from leadgw_client.pb.leadgw.v1 import lead_service_pb2 as pb
from leadgw_client.pb.leadgw.v1 import lead_service_pb2_grpc as pb_grpc
from retrieval.notes import NotesService
from retrieval.summary import Summarizer
from runtimes.errors import InvalidInput, Unavailable
from runtimes.repository import ServedModel
from runtimes.scoring import LeadScorer, build_score_columns, build_scores, is_heavy
from runtimes.served_model import Outputs
from runtimes.types import LeadColumn, LeadInput


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
        summary_relay: SummaryRelay | None = None,
    ) -> None:
        self._scorer = scorer
        self._converter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="convert")
        self._default_max_reasons = default_max_reasons
        self._notes = notes
        self._summarizer = summarizer
        self._summary_deadline_s = summary_deadline_s
        self._summary_relay = summary_relay

    async def ScoreLeads(
        self, request: pb.ScoreLeadsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ScoreLeadsResponse | bytes:
        """A column-wise answer comes back as its wire bytes (``score_columns_answer``)."""
        model = request.model_name or None
        version = request.model_version or None
        max_reasons = request.max_reasons or self._default_max_reasons
        if version is None and self._scorer.canary_on(model):
            # A canary is on: each lead goes to the version its sticky hash picks.
            lead_ids = (
                list(request.columns.lead_ids[:1])  # one version per column-form answer
                if request.HasField("columns")
                else [lead.lead_id for lead in request.leads]
            )
            groups = self._scorer.assign(model, current_caller().tenant, lead_ids)
            if len(groups) > 1:
                return await self._score_split(request, context, groups)
            version = groups[0][0].version
        if request.HasField("columns"):
            return await self._score_columns(request, context, model, version, max_reasons)
        if not is_heavy(len(request.leads)):
            scores = await self._scorer.score_leads(
                lead_codec.leads_from_pb(request.leads),
                model=model,
                version=version,
                max_reasons=max_reasons,
                deadline=deadline_of(context),
                tenant=current_caller().tenant,
            )
            return lead_codec.scores_to_pb(scores)
        # A big request's per-lead Python runs on the conversion thread (``ServedModel.infer_in``;
        # one that fills most of a batch runs its model there too, in the same hop): the event
        # loop stays free for everyone else, and big requests do not fight each other for the GIL
        # on a pool of threads.
        served = self._scorer.admit(len(request.leads), model, version)

        def prepare() -> tuple[list[LeadInput], np.ndarray]:
            leads = lead_codec.leads_from_pb(request.leads)
            return leads, self._scorer.prepare(leads, served)

        def finish(leads: list[LeadInput], outputs: Outputs) -> pb.ScoreLeadsResponse:
            return lead_codec.scores_to_pb(build_scores(served, leads, outputs, max_reasons))

        tenant = current_caller().tenant
        return await served.infer_in(
            self._converter,
            prepare,
            finish,
            rows=len(request.leads),
            deadline=deadline_of(context),
            keys=lambda: (tenant, [lead.lead_id for lead in request.leads]),
        )

    async def _score_split(
        self,
        request: pb.ScoreLeadsRequest,
        context: grpc.aio.ServicerContext,
        groups: list[tuple[ServedModel, list[int]]],
    ) -> pb.ScoreLeadsResponse:
        """Scores each version's leads as a request of its own; answers in request order, ranked
        across all of them."""
        parts = []
        for served, rows in groups:
            part = pb.ScoreLeadsRequest(
                leads=[request.leads[i] for i in rows],
                model_name=served.name,
                model_version=served.version,
                max_reasons=request.max_reasons,
            )
            parts.append(self.ScoreLeads(part, context))
        answers = await asyncio.gather(*parts)
        merged: list[Any] = [None] * len(request.leads)
        for (_, rows), answer in zip(groups, answers, strict=True):
            assert not isinstance(answer, bytes)  # the parts send leads: answered as messages
            for row, score in zip(rows, answer.scores, strict=True):
                merged[row] = score
        order = sorted(range(len(merged)), key=lambda i: -merged[i].probability)
        for rank, i in enumerate(order, 1):
            merged[i].rank = rank
        return pb.ScoreLeadsResponse(scores=merged)

    async def _score_columns(
        self,
        request: pb.ScoreLeadsRequest,
        context: grpc.aio.ServicerContext,
        model: str | None,
        version: str | None,
        max_reasons: int,
    ) -> bytes:
        if request.leads:
            raise InvalidInput(
                f"request sets both leads ({len(request.leads)}) and columns: send one of them"
            )
        count = len(request.columns.lead_ids)
        served = self._scorer.admit(count, model, version)
        tenant = current_caller().tenant

        if not is_heavy(count):
            lead_ids, columns = lead_codec.lead_columns_from_pb(
                request.columns, served.schema.category_lists
            )
            features = self._scorer.prepare_columns(lead_ids, columns, served)
            outputs = await served.infer(features, deadline_of(context), lambda: (tenant, lead_ids))
            return _encode_columns_response(served, lead_ids, columns, outputs, max_reasons)

        def prepare() -> tuple[tuple[list[str], dict[str, LeadColumn]], np.ndarray]:
            lead_ids, columns = lead_codec.lead_columns_from_pb(
                request.columns, served.schema.category_lists
            )
            return (lead_ids, columns), self._scorer.prepare_columns(lead_ids, columns, served)

        def finish(decoded: tuple[list[str], dict[str, LeadColumn]], outputs: Outputs) -> bytes:
            lead_ids, columns = decoded
            return _encode_columns_response(served, lead_ids, columns, outputs, max_reasons)

        # A few ms of checks and reason labels per 1,000 leads: off the loop, as big per-lead
        # requests are.
        return await served.infer_in(
            self._converter,
            prepare,
            finish,
            rows=count,
            deadline=deadline_of(context),
            keys=lambda: (tenant, list(request.columns.lead_ids)),
        )

    def close(self) -> None:
        self._converter.shutdown(wait=False, cancel_futures=True)

    async def IndexNotes(
        self, request: pb.IndexNotesRequest, context: grpc.aio.ServicerContext
    ) -> pb.IndexNotesResponse:
        notes = self._require_notes()
        schema = self._scorer.resolve(None, None).schema  # the model summaries score with
        return await notes_rpc.index_notes(notes, current_caller().tenant, request, schema)

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
    ) -> AsyncIterator[pb.SummarizeLeadResponse | bytes]:
        # The client may shorten a summary, never lengthen it past summary_deadline_s.
        longest = time.monotonic() + self._summary_deadline_s
        deadline = min(deadline_of(context) or longest, longest)
        if self._summary_relay is not None:  # the summaries process writes it (summary_process)
            tenant = current_caller().tenant
            raw = request.SerializeToString()
            async for answer in self._summary_relay.summarize(raw, tenant, deadline):
                yield answer
            return
        if self._summarizer is None:
            raise Unavailable("summaries are not configured on this server")
        async for message in summary_rpc.summarize_lead(
            self._summarizer, current_caller().tenant, request, deadline
        ):
            yield message

    def _require_notes(self) -> NotesService:
        if self._notes is None:
            raise Unavailable("the notes store is not available on this server")
        return self._notes


def _encode_columns_response(
    served: ServedModel,
    lead_ids: list[str],
    columns: dict[str, LeadColumn],
    outputs: dict[str, np.ndarray],
    max_reasons: int,
) -> bytes:
    """The answer as its wire bytes (``lead_codec.score_columns_answer``)."""
    scores = build_score_columns(served, lead_ids, columns, outputs, max_reasons)
    return lead_codec.score_columns_answer(scores)
