"""``leadgw.v1.LeadService``: thin — convert, call the core, convert back."""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import grpc
import numpy as np

from gateway import lead_codec, notes_rpc, summary_rpc
from gateway.auth import current_caller
from leadgw_client.pb.leadgw.v1 import lead_service_pb2 as pb
from leadgw_client.pb.leadgw.v1 import lead_service_pb2_grpc as pb_grpc
from retrieval.notes import NotesService
from retrieval.summary import Summarizer
from runtimes.errors import InvalidInput, Unavailable
from runtimes.repository import ServedModel
from runtimes.scoring import LeadScorer, build_score_columns, build_scores, is_heavy, lead_keys
from runtimes.types import LeadColumn, LeadInput

T = TypeVar("T")


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
        self._converter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="convert")
        self._default_max_reasons = default_max_reasons
        self._notes = notes
        self._summarizer = summarizer
        self._summary_deadline_s = summary_deadline_s

    async def ScoreLeads(
        self, request: pb.ScoreLeadsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ScoreLeadsResponse:
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
        # A big request's per-lead Python runs on the conversion thread, in two hops (decode and
        # encode; reasons and the response), so the event loop stays free for everyone else and
        # big requests do not fight each other for the GIL on a pool of threads.
        loop = asyncio.get_running_loop()
        leads, served, features = await loop.run_in_executor(
            self._converter, contextvars.copy_context().run, self._decode, request, model, version
        )
        keys = lead_keys(current_caller().tenant, leads)
        outputs = await served.infer(features, deadline_of(context), keys)
        return await loop.run_in_executor(
            self._converter, _encode_response, served, leads, outputs, max_reasons
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
    ) -> pb.ScoreLeadsResponse:
        if request.leads:
            raise InvalidInput(
                f"request sets both leads ({len(request.leads)}) and columns: send one of them"
            )
        lead_ids, columns = lead_codec.lead_columns_from_pb(request.columns)
        # A few ms of checks and reason labels per 1,000 leads: big requests take them off the
        # loop, as big per-lead requests do.
        heavy = is_heavy(len(lead_ids))
        served, features = await self._run(
            heavy, self._scorer.prepare_columns, lead_ids, columns, model, version
        )
        tenant = current_caller().tenant
        outputs = await served.infer(features, deadline_of(context), lambda: (tenant, lead_ids))
        return await self._run(
            heavy, _encode_columns_response, served, lead_ids, columns, outputs, max_reasons
        )

    async def _run(self, off_loop: bool, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)``, on the conversion thread when ``off_loop`` (in this task's context,
        so its spans nest under the request's), else right here."""
        if not off_loop:
            return fn(*args)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._converter, contextvars.copy_context().run, fn, *args
        )

    def _decode(
        self, request: pb.ScoreLeadsRequest, model: str | None, version: str | None
    ) -> tuple[list[LeadInput], ServedModel, np.ndarray]:
        leads = lead_codec.leads_from_pb(request.leads)
        served, features = self._scorer.prepare(leads, model, version)
        return leads, served, features

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
    ) -> AsyncIterator[pb.SummarizeLeadResponse]:
        if self._summarizer is None:
            raise Unavailable("summaries are not configured on this server")
        # The client may shorten a summary, never lengthen it past summary_deadline_s.
        longest = time.monotonic() + self._summary_deadline_s
        deadline = min(deadline_of(context) or longest, longest)
        async for message in summary_rpc.summarize_lead(
            self._summarizer, current_caller().tenant, request, deadline
        ):
            yield message

    def _require_notes(self) -> NotesService:
        if self._notes is None:
            raise Unavailable("the notes store is not available on this server")
        return self._notes


def _encode_response(
    served: ServedModel, leads: list[LeadInput], outputs: dict[str, np.ndarray], max_reasons: int
) -> pb.ScoreLeadsResponse:
    return lead_codec.scores_to_pb(build_scores(served, leads, outputs, max_reasons))


def _encode_columns_response(
    served: ServedModel,
    lead_ids: list[str],
    columns: dict[str, LeadColumn],
    outputs: dict[str, np.ndarray],
    max_reasons: int,
) -> pb.ScoreLeadsResponse:
    scores = build_score_columns(served, lead_ids, columns, outputs, max_reasons)
    return lead_codec.score_columns_to_pb(scores)
