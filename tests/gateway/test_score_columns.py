"""ScoreLeads with leads sent column-wise: the same answers as lead by lead, and precise errors."""

from __future__ import annotations

import dataclasses

import grpc
import pytest
from leads_helpers import columns_request, sample_leads, score_request

from gateway.settings import BUNDLED_MODELS
from leadgw_client.pb.leadgw.v1 import lead_service_pb2 as pb
from runtimes.model_config import load_config
from runtimes.schema import FeatureSchema
from runtimes.types import LeadInput

SCHEMA = FeatureSchema.from_config(load_config(BUNDLED_MODELS / "lead_scorer" / "config.toml").raw)


def with_gaps(leads: list[LeadInput]) -> list[LeadInput]:
    """Some leads without some features at all (not even None): missing, column-wise."""
    out = []
    for i, lead in enumerate(leads):
        features = dict(lead.features)
        if i % 7 == 0:
            features.pop("age")
        if i % 5 == 0:
            features.pop("investable_assets")
        out.append(dataclasses.replace(lead, features=features))
    return out


def assert_same_scores(by_lead: pb.ScoreLeadsResponse, by_column: pb.ScoreLeadsResponse) -> None:
    columns = by_column.columns
    k = columns.reasons_per_lead
    assert not by_column.scores
    assert list(columns.lead_ids) == [s.lead_id for s in by_lead.scores]
    assert list(columns.probability) == [s.probability for s in by_lead.scores]
    assert list(columns.logit) == [s.logit for s in by_lead.scores]
    assert list(columns.rank) == [s.rank for s in by_lead.scores]
    assert list(columns.band) == [s.band for s in by_lead.scores]
    assert k == len(by_lead.scores[0].reasons)
    assert len(columns.reason_feature) == len(columns.reason_label) == k * len(by_lead.scores)
    assert list(columns.feature_names) == SCHEMA.names
    for i, score in enumerate(by_lead.scores):
        span = slice(i * k, (i + 1) * k)
        features = [columns.feature_names[j] for j in columns.reason_feature[span]]
        assert features == [r.feature for r in score.reasons]
        assert list(columns.reason_label[span]) == [r.label for r in score.reasons]
        assert list(columns.reason_contribution[span]) == [r.contribution for r in score.reasons]
        assert columns.base_value == score.base_value
        assert (columns.model_name, columns.model_version) == (
            score.model_name,
            score.model_version,
        )


# 5 leads take the event loop; 400 take the conversion thread (is_heavy) and the batcher's queue;
# 600 (over half a batch) run their model on the conversion thread too (ServedModel.infer_in).
@pytest.mark.parametrize(
    ("n", "max_reasons"), [(5, 3), (5, 16), (400, 3), (400, 16), (600, 3), (600, 16)]
)
def test_columns_score_exactly_as_leads_do(lead_stub, n: int, max_reasons: int) -> None:
    leads = with_gaps(sample_leads(n, seed=21))
    by_lead = lead_stub.ScoreLeads(score_request(leads, max_reasons=max_reasons))
    by_column = lead_stub.ScoreLeads(columns_request(leads, max_reasons=max_reasons))
    assert_same_scores(by_lead, by_column)
    if max_reasons == 16:  # every feature listed: lead 0's missing age is labelled as missing
        columns = by_column.columns
        names = [columns.feature_names[j] for j in columns.reason_feature[:16]]
        reasons = dict(zip(names, columns.reason_label[:16], strict=True))
        assert reasons["age"] == SCHEMA.spec("age").label_missing


def test_a_bad_value_names_its_lead_and_feature_as_leads_do(lead_stub) -> None:
    leads = sample_leads(300, seed=22)
    bad = dataclasses.replace(leads[123], features={**leads[123].features, "age": 7.0})
    leads[123] = bad
    for request in (score_request(leads), columns_request(leads)):
        with pytest.raises(grpc.RpcError) as caught:
            lead_stub.ScoreLeads(request)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details() == (
            f"lead '{bad.lead_id}': feature 'age' is 7, outside [18, 100]"
        )


def column_error(lead_stub, request: pb.ScoreLeadsRequest) -> str:
    with pytest.raises(grpc.RpcError) as caught:
        lead_stub.ScoreLeads(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    return caught.value.details()


def test_malformed_columns_are_refused_precisely(lead_stub) -> None:
    leads = sample_leads(4, seed=23)

    request = columns_request(leads)
    request.leads.add(lead_id="x")
    assert column_error(lead_stub, request) == (
        "request sets both leads (1) and columns: send one of them"
    )

    request = columns_request(leads)
    request.columns.features[0].numbers.values.pop()
    assert column_error(lead_stub, request) == "columns: feature 'age' has 3 values for 4 lead ids"

    request = columns_request(leads)
    request.columns.features.add(name="age").numbers.values.extend([1.0] * 4)
    assert column_error(lead_stub, request) == "columns: feature 'age' has two columns"

    request = columns_request(leads)
    request.columns.features.add(name="shoe_size").numbers.values.extend([9.0] * 4)
    assert column_error(lead_stub, request).startswith(
        "columns: unknown feature 'shoe_size'; this model's features: age, household_income"
    )

    without = [
        dataclasses.replace(lead, features={**lead.features, "new_child": None}) for lead in leads
    ]
    request = columns_request(without)  # no new_child column: every lead has None
    request.columns.features.add(name="new_child")
    assert column_error(lead_stub, request).startswith(
        "columns: feature 'new_child' has no values: set numbers, categories or flags"
    )

    request = columns_request(leads)
    request.columns.features[0].missing.append(4)
    assert column_error(lead_stub, request) == (
        "columns: feature 'age' lists missing position 4, but there are 4 lead ids"
    )

    request = columns_request(leads)
    request.columns.lead_ids[2] = request.columns.lead_ids[0]
    assert column_error(lead_stub, request) == (
        f"duplicate lead id '{leads[0].lead_id}': each lead may appear once"
    )

    request = columns_request(leads)
    request.columns.lead_ids[1] = ""
    assert column_error(lead_stub, request) == "lead at position 1: empty lead id"

    assert column_error(lead_stub, pb.ScoreLeadsRequest(columns=pb.LeadColumns())) == (
        "request has no leads"
    )


def test_a_column_of_the_wrong_type_names_the_first_lead(lead_stub) -> None:
    leads = sample_leads(3, seed=24)
    request = columns_request(leads)
    age = next(c for c in request.columns.features if c.name == "age")
    age.categories.values.extend(["old"] * 3)  # replaces the numbers: values is a oneof
    assert column_error(lead_stub, request) == (
        f"lead '{leads[0].lead_id}': feature 'age' must be a number, got str 'old'"
    )


def test_a_bad_request_leaves_the_next_one_alone(lead_stub) -> None:
    leads = sample_leads(3, seed=25)
    request = columns_request(leads)
    request.columns.features[0].missing.append(99)
    column_error(lead_stub, request)
    answer = lead_stub.ScoreLeads(columns_request(leads))
    assert list(answer.columns.lead_ids) == [lead.lead_id for lead in leads]


def test_a_feature_without_a_column_is_missing_for_every_lead(lead_stub) -> None:
    leads = [
        dataclasses.replace(lead, features={**lead.features, "age": None})
        for lead in sample_leads(20, seed=26)
    ]
    request = columns_request(leads, max_reasons=16)
    assert "age" not in [column.name for column in request.columns.features]
    by_column = lead_stub.ScoreLeads(request)
    assert_same_scores(lead_stub.ScoreLeads(score_request(leads, max_reasons=16)), by_column)
    labels = by_column.columns.reason_label
    features = [by_column.columns.feature_names[j] for j in by_column.columns.reason_feature]
    assert {label for f, label in zip(features, labels, strict=True) if f == "age"} == {
        SCHEMA.spec("age").label_missing
    }
