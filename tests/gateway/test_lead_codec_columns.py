"""The column-wise codec: typed columns read from the wire's packed bytes, and numeric answer
fields written as packed bytes, each equal to what protobuf's own per-value API gives."""

from __future__ import annotations

import numpy as np
import pytest

from gateway import lead_codec
from leadgw_client.pb.leadgw.v1 import lead_service_pb2 as pb
from runtimes.errors import InvalidInput
from runtimes.types import ScoreColumns


def wire_columns(n: int) -> pb.LeadColumns:
    rng = np.random.default_rng(n)
    columns = pb.LeadColumns(lead_ids=[f"L-{i}" for i in range(n)])
    numbers = columns.features.add(name="age")
    numbers.numbers.values.extend([-0.0, np.inf, np.nan, 1e300, *rng.normal(size=n)][:n])
    numbers.missing.extend([i for i in range(n) if i % 4 == 1])
    flags = columns.features.add(name="job_change")
    flags.flags.values.extend((rng.random(n) < 0.5).tolist())
    categories = columns.features.add(name="channel")
    categories.categories.values.extend(
        ["web", "", "référence", "event"] * (n // 4) + [""] * (n % 4)
    )
    categories.missing.extend([0, 0])  # a position may be repeated
    return columns


@pytest.mark.parametrize("n", [1, 3, 200])
def test_typed_columns_hold_exactly_the_wire_values(n: int) -> None:
    message = pb.ScoreLeadsRequest.FromString(
        pb.ScoreLeadsRequest(columns=wire_columns(n)).SerializeToString()
    ).columns
    lead_ids, columns = lead_codec.lead_columns_from_pb(message)
    assert lead_ids == list(message.lead_ids)
    for feature in message.features:
        column = columns[feature.name]
        kind = feature.WhichOneof("values")
        assert (
            column.kind == {"numbers": "number", "flags": "boolean", "categories": "category"}[kind]
        )
        expected: list = list(getattr(feature, kind).values)
        for position in feature.missing:
            expected[position] = None
        got = column.as_values()
        assert [type(v) for v in got] == [type(v) for v in expected]
        # NaN != NaN: compare the bits of floats.
        assert [np.float64(v).tobytes() if type(v) is float else v for v in got] == [
            np.float64(v).tobytes() if type(v) is float else v for v in expected
        ]


def test_an_empty_column_and_a_missing_position_past_the_end() -> None:
    columns = pb.LeadColumns(lead_ids=[])
    columns.features.add(name="age").numbers.SetInParent()
    columns.features.add(name="job_change").flags.SetInParent()
    _, typed = lead_codec.lead_columns_from_pb(columns)
    assert typed["age"].values.dtype == np.float64 and len(typed["age"]) == 0
    assert typed["job_change"].values.dtype == bool and len(typed["job_change"]) == 0
    columns = pb.LeadColumns(lead_ids=["a", "b"])
    column = columns.features.add(name="age")
    column.numbers.values.extend([1.0, 2.0])
    column.missing.extend([0, 7, 2])
    with pytest.raises(InvalidInput) as caught:
        lead_codec.lead_columns_from_pb(columns)
    assert caught.value.message == (
        "columns: feature 'age' lists missing position 7, but there are 2 lead ids"
    )


def naive(scores: ScoreColumns) -> pb.ScoreLeadsResponse:
    """The answer built value by value through protobuf's own API."""
    return pb.ScoreLeadsResponse(
        columns=pb.ScoreColumns(
            lead_ids=scores.lead_ids,
            probability=scores.probability.tolist(),
            band=lead_codec._BAND_CODES[scores.band].tolist(),
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


@pytest.mark.parametrize(("n", "k"), [(0, 0), (1, 3), (130, 2), (20_000, 1)])
def test_packed_answer_fields_equal_protobufs_own(n: int, k: int) -> None:
    rng = np.random.default_rng(n)
    special = np.array([-0.0, np.inf, -np.inf, 5e-324, 1e308])
    probability = np.concatenate([special, rng.random(n)])[:n]
    scores = ScoreColumns(
        lead_ids=[f"L-{i}" for i in range(n)],
        probability=probability,
        band=rng.integers(0, 3, n).astype(np.int8),
        rank=rng.permutation(n) + 1,  # 20,000 leads: ranks of one, two and three varint bytes
        logit=rng.normal(size=n),
        reasons_per_lead=k,
        reason_feature=rng.integers(0, 16, n * k),
        reason_label=[f"label {i % 7} é" for i in range(n * k)],
        reason_contribution=rng.normal(size=n * k),
        base_value=-1.5,
        model_name="lead_scorer",
        model_version="1",
        feature_names=[f"f{j}" for j in range(16)],
    )
    built = lead_codec.score_columns_to_pb(scores)
    assert built == naive(scores)
    assert pb.ScoreLeadsResponse.FromString(built.SerializeToString()) == naive(scores)


def test_packed_varints_of_every_length() -> None:
    values = np.array([0, 1, 127, 128, 16_383, 16_384, 2**21 - 1, 2**21, 2**28, 2**32 - 1])
    message = pb.ScoreColumns()
    message.MergeFromString(lead_codec._packed_varints(lead_codec._RANK, values))
    assert list(message.rank) == values.tolist()
    with pytest.raises(ValueError):
        lead_codec._packed_varints(lead_codec._RANK, np.array([-1]))
