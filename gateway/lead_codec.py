"""``leadgw.v1`` messages ↔ the core's plain types."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from leadgw_client.pb.leadgw.v1 import lead_service_pb2 as pb
from runtimes.errors import InvalidInput
from runtimes.types import BAND_ORDER, Band, FeatureValue, LeadInput, LeadScore, ScoreColumns

BAND_TO_PB = {
    Band.HOT: pb.SCORE_BAND_HOT,
    Band.WARM: pb.SCORE_BAND_WARM,
    Band.COLD: pb.SCORE_BAND_COLD,
}


# ScoreColumns.band (positions in BAND_ORDER) → ScoreBand numbers, by indexing.
_BAND_CODES = np.array([BAND_TO_PB[band] for band in BAND_ORDER], dtype=np.int64)

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


def lead_columns_from_pb(
    columns: pb.LeadColumns,
) -> tuple[list[str], dict[str, list[FeatureValue]]]:
    """Lead ids and one list of values per feature (None where missing), checked for shape:
    each column's length, its missing positions, and one column per feature. Whether the values
    suit the feature is the schema's check, which names the lead."""
    lead_ids = list(columns.lead_ids)
    n = len(lead_ids)
    values: dict[str, list[FeatureValue]] = {}
    for column in columns.features:
        name = column.name
        if not name:
            raise InvalidInput("columns: a feature column has no name")
        if name in values:
            raise InvalidInput(f"columns: feature {name!r} has two columns")
        kind = column.WhichOneof("values")
        if kind is None:
            raise InvalidInput(
                f"columns: feature {name!r} has no values: set numbers, categories or flags, "
                "or leave the column out if the feature is missing for every lead"
            )
        column_values: list[FeatureValue] = list(getattr(column, kind).values)
        if len(column_values) != n:
            raise InvalidInput(
                f"columns: feature {name!r} has {len(column_values)} values for {n} lead ids"
            )
        for position in column.missing:
            if position >= n:
                raise InvalidInput(
                    f"columns: feature {name!r} lists missing position {position}, "
                    f"but there are {n} lead ids"
                )
            column_values[position] = None
        values[name] = column_values
    return lead_ids, values


def score_columns_to_pb(scores: ScoreColumns) -> pb.ScoreLeadsResponse:
    return pb.ScoreLeadsResponse(
        columns=pb.ScoreColumns(
            lead_ids=scores.lead_ids,
            probability=scores.probability.tolist(),
            band=_BAND_CODES[scores.band].tolist(),
            rank=scores.rank.tolist(),
            logit=scores.logit.tolist(),
            reasons_per_lead=scores.reasons_per_lead,
            reason_feature=scores.reason_feature.tolist(),
            reason_label=scores.reason_label,
            reason_contribution=scores.reason_contribution.tolist(),
            base_value=scores.base_value,
            model_name=scores.model_name,
            model_version=scores.model_version,
            feature_names=scores.feature_names,
        )
    )


def leads_to_columns(leads: Sequence[LeadInput]) -> pb.LeadColumns | None:
    """The leads column-wise, for a client: None when a feature's values are not all of one type
    (numbers, category names or flags), which only the per-lead form can carry; the server then
    names the lead at fault."""
    columns = pb.LeadColumns(lead_ids=[lead.lead_id for lead in leads])
    names = dict.fromkeys(name for lead in leads for name in lead.features)
    for name in names:
        values = [lead.features.get(name) for lead in leads]
        kinds = {type(value) for value in values if value is not None}
        if not kinds:
            continue  # missing for every lead: no column says the same
        column = columns.features.add(name=name)
        column.missing.extend(i for i, value in enumerate(values) if value is None)
        if kinds == {bool}:
            column.flags.values.extend(value is True for value in values)
        elif kinds == {str}:
            column.categories.values.extend(v if isinstance(v, str) else "" for v in values)
        elif kinds <= {int, float}:
            column.numbers.values.extend(0.0 if v is None else float(v) for v in values)
        else:
            return None
    return columns


def scores_from_columns(columns: pb.ScoreColumns) -> list[pb.LeadScore]:
    """A column-wise answer as per-lead ``LeadScore`` messages (for display, not the hot path)."""
    k = columns.reasons_per_lead
    names = columns.feature_names
    return [
        pb.LeadScore(
            lead_id=lead_id,
            probability=columns.probability[i],
            band=columns.band[i],
            rank=columns.rank[i],
            logit=columns.logit[i],
            base_value=columns.base_value,
            reasons=[
                pb.Reason(
                    feature=names[columns.reason_feature[j]],
                    label=columns.reason_label[j],
                    contribution=columns.reason_contribution[j],
                )
                for j in range(i * k, (i + 1) * k)
            ],
            model_name=columns.model_name,
            model_version=columns.model_version,
        )
        for i, lead_id in enumerate(columns.lead_ids)
    ]
