"""A deterministic ``LeadScorer`` for pipeline tests."""

from __future__ import annotations

from collections.abc import Sequence

from runtimes.errors import InvalidInput
from runtimes.types import Band, LeadInput, LeadScore, Reason


class FixedScorer:
    """Scores every lead the same, with two reasons; needs an ``age`` feature."""

    def __init__(self) -> None:
        self.calls: list[list[LeadInput]] = []

    async def score_leads(
        self,
        leads: Sequence[LeadInput],
        *,
        model: str | None = None,
        version: str | None = None,
        max_reasons: int = 3,
        tenant: str = "",
    ) -> list[LeadScore]:
        self.calls.append(list(leads))
        scores = []
        for rank, lead in enumerate(leads, start=1):
            if "age" not in lead.features:
                raise InvalidInput(f"lead {lead.lead_id}: feature 'age' is missing")
            reasons = [
                Reason("years_to_retirement", "Retiring within 5 years", 0.81),
                Reason("investable_assets", "High investable assets", 0.52),
                Reason("days_since_contact", "No contact for 60 days", -0.3),
            ][:max_reasons]
            scores.append(
                LeadScore(
                    lead_id=lead.lead_id,
                    probability=0.72,
                    band=Band.HOT,
                    rank=rank,
                    logit=0.94,
                    base_value=-1.1,
                    reasons=reasons,
                    model_name=model or "lead_scorer",
                    model_version=version or "1",
                )
            )
        return scores

    def version_for(self, model: str | None, tenant: str, lead_id: str) -> str | None:
        return None  # no canary: the live version
