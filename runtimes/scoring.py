"""Scores leads: encode features, run the model, turn outputs into bands, ranks and reasons."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
from opentelemetry import trace

from runtimes.errors import InvalidInput
from runtimes.repository import ModelRepository, ServedModel
from runtimes.types import Band, LeadInput, LeadScore, Reason

# From about this many leads, conversion costs more than the hop to a worker thread.
OFFLOAD_LEADS = 256


class LeadScorer:
    """The transport-free core behind ``ScoreLeads`` (and the scoring step of summaries)."""

    def __init__(self, repository: ModelRepository, *, default_model: str, max_leads: int) -> None:
        self.repository = repository
        self.default_model = default_model
        self.max_leads = max_leads
        self._tracer = trace.get_tracer("leadgw.scoring")

    def resolve(self, model: str | None, version: str | None) -> ServedModel:
        return self.repository.get(model or self.default_model, version or None)

    async def score_leads(
        self,
        leads: Sequence[LeadInput],
        *,
        model: str | None = None,
        version: str | None = None,
        max_reasons: int = 3,
        deadline: float | None = None,
    ) -> list[LeadScore]:
        """Scores leads in request order. Big requests encode and decode on a worker thread, so
        one 10,000-lead request never stalls the event loop that every other request needs."""
        if is_heavy(len(leads)):
            served, features = await asyncio.to_thread(self.prepare, leads, model, version)
        else:
            served, features = self.prepare(leads, model, version)
        outputs = await served.infer(features, deadline)
        if is_heavy(len(leads)):
            return await asyncio.to_thread(build_scores, served, leads, outputs, max_reasons)
        return build_scores(served, leads, outputs, max_reasons)

    def prepare(
        self, leads: Sequence[LeadInput], model: str | None, version: str | None
    ) -> tuple[ServedModel, np.ndarray]:
        """Checks the request and encodes its leads: the model to run and its input matrix."""
        if not leads:
            raise InvalidInput("request has no leads")
        if len(leads) > self.max_leads:
            raise InvalidInput(f"request has {len(leads)} leads; the limit is {self.max_leads}")
        _check_unique_ids(leads)
        served = self.resolve(model, version)
        with self._tracer.start_as_current_span("encode features") as span:
            if span.is_recording():
                span.set_attribute("leadgw.leads", len(leads))
            return served, served.schema.encode(leads)


def is_heavy(leads: int) -> bool:
    """Whether a request's per-lead Python work is long enough to move off the event loop."""
    return leads >= OFFLOAD_LEADS


def _check_unique_ids(leads: Sequence[LeadInput]) -> None:
    seen: set[str] = set()
    for lead in leads:
        if lead.lead_id in seen:
            raise InvalidInput(f"duplicate lead id '{lead.lead_id}': each lead may appear once")
        seen.add(lead.lead_id)


def build_scores(
    served: ServedModel,
    leads: Sequence[LeadInput],
    outputs: dict[str, np.ndarray],
    max_reasons: int,
) -> list[LeadScore]:
    """Bands, ranks and top reasons, vectorised over leads; only the final objects are per lead."""
    config = served.config
    probability = outputs[config.probability_output].reshape(-1).astype(np.float64)
    logit = outputs[config.logit_output].reshape(-1).astype(np.float64)
    contributions = outputs[config.contributions_output]

    ranks = np.empty(len(leads), dtype=np.int64)
    ranks[np.argsort(-probability, kind="stable")] = np.arange(1, len(leads) + 1)
    bands = np.where(
        probability >= config.bands.hot,
        0,
        np.where(probability >= config.bands.warm, 1, 2),
    )
    band_of = (Band.HOT, Band.WARM, Band.COLD)

    k = min(max_reasons, contributions.shape[1])
    top = _top_k_by_magnitude(contributions, k)
    names = served.schema.names
    label = served.schema.reason_label
    scores = []
    for row, lead in enumerate(leads):
        reasons = [
            Reason(
                feature=names[j],
                label=label(names[j], lead.features.get(names[j])),
                contribution=float(contributions[row, j]),
            )
            for j in top[row]
        ]
        scores.append(
            LeadScore(
                lead_id=lead.lead_id,
                probability=float(probability[row]),
                band=band_of[bands[row]],
                rank=int(ranks[row]),
                logit=float(logit[row]),
                base_value=served.base_value,
                reasons=reasons,
                model_name=served.name,
                model_version=served.version,
            )
        )
    return scores


def _top_k_by_magnitude(contributions: np.ndarray, k: int) -> np.ndarray:
    """Column indices of each row's k largest |contribution|, largest first."""
    if k <= 0:
        return np.empty((contributions.shape[0], 0), dtype=np.int64)
    magnitude = np.abs(contributions)
    candidates = np.argpartition(-magnitude, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(magnitude, candidates, axis=1), axis=1, kind="stable")
    return np.take_along_axis(candidates, order, axis=1)
