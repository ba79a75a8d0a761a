"""``leadgw.v1`` messages ↔ the core's plain types."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from gateway.pb.leadgw.v1 import lead_service_pb2 as pb
from runtimes.types import Band, FeatureValue, LeadInput, LeadScore

BAND_TO_PB = {
    Band.HOT: pb.SCORE_BAND_HOT,
    Band.WARM: pb.SCORE_BAND_WARM,
    Band.COLD: pb.SCORE_BAND_COLD,
}


_which = pb.FeatureValue.WhichOneof  # unbound: saves an attribute lookup per value


def features_from_pb(features: Mapping[str, pb.FeatureValue]) -> dict[str, FeatureValue]:
    # One comprehension over items(): upb's map iteration, not this code, is most of the cost.
    return {
        name: None if (kind := _which(value, "kind")) is None else getattr(value, kind)
        for name, value in features.items()
    }


def leads_from_pb(leads: Iterable[pb.Lead]) -> list[LeadInput]:
    return [LeadInput(lead.lead_id, features_from_pb(lead.features)) for lead in leads]


def feature_to_pb(value: FeatureValue) -> pb.FeatureValue:
    if value is None:
        return pb.FeatureValue()
    if isinstance(value, bool):
        return pb.FeatureValue(flag=value)
    if isinstance(value, str):
        return pb.FeatureValue(category=value)
    return pb.FeatureValue(number=float(value))


def lead_to_pb(lead: LeadInput) -> pb.Lead:
    message = pb.Lead(lead_id=lead.lead_id)
    for name, value in lead.features.items():
        message.features[name].CopyFrom(feature_to_pb(value))
    return message


def score_to_pb(score: LeadScore) -> pb.LeadScore:
    return pb.LeadScore(
        lead_id=score.lead_id,
        probability=score.probability,
        band=BAND_TO_PB[score.band],
        rank=score.rank,
        logit=score.logit,
        base_value=score.base_value,
        reasons=[
            pb.Reason(feature=r.feature, label=r.label, contribution=r.contribution)
            for r in score.reasons
        ],
        model_name=score.model_name,
        model_version=score.model_version,
    )


def scores_to_pb(scores: Iterable[LeadScore]) -> pb.ScoreLeadsResponse:
    return pb.ScoreLeadsResponse(scores=[score_to_pb(s) for s in scores])
