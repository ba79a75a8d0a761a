"""The column-wise codec: typed columns read from the wire's packed bytes, and the answer written
as wire bytes (packed numbers, labels from a table's encoded labels), each equal to what
protobuf's own per-value API gives."""

from __future__ import annotations

import dataclasses
import gc

import numpy as np
import pytest

from gateway import lead_codec
from leadgw_client.pb.leadgw.v1 import lead_service_pb2 as pb
from runtimes.column_labels import ColumnLabeller
from runtimes.errors import InvalidInput
from runtimes.schema import FeatureSpec
from runtimes.types import LeadColumn, ScoreColumns


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
        # Multi-byte characters; a label past 127 bytes has a two-byte length.
        reason_label=[f"label {i % 7} é" + "x" * 130 * (i % 5 == 4) for i in range(n * k)],
        reason_contribution=rng.normal(size=n * k),
        base_value=-1.5,
        model_name="lead_scorer",
        model_version="1",
        feature_names=[f"f{j}" for j in range(16)],
    )
    answer = lead_codec.score_columns_answer(scores)
    assert isinstance(answer, bytes)
    assert pb.ScoreLeadsResponse.FromString(answer) == naive(scores)


SPECS = [
    FeatureSpec.from_table(table)
    for table in (
        {"name": "age", "type": "number", "format": "{:.0f}", "min": 18, "max": 100},
        {"name": "score", "type": "number", "format": "{:.1f}"},  # no table: its own path
        {"name": "channel", "type": "category", "categories": ["web", "référence"]},
        {"name": "rating", "type": "number", "format": "{:.2f}"},  # no table, absent
    )
]


def test_labels_picked_from_a_table_are_written_from_its_encoded_labels() -> None:
    """Labels a schema's labeller picks by key (``PickedLabels``) go to the wire from the table's
    labels encoded once, with the picks of a feature without a table (and of one absent, one
    label for all) encoded apart: the answer parses to exactly the labels as a list. The
    encoded table is kept while its labeller lives and no longer."""
    rng = np.random.default_rng(5)
    n, k = 300, 3
    labeller = ColumnLabeller(SPECS)
    columns = [
        LeadColumn("number", rng.integers(18, 101, n).astype(np.float64), None),
        LeadColumn("number", rng.normal(size=n) * 100, None),
        LeadColumn("category", rng.choice(["web", "référence"], n).tolist(), None),
        None,
    ]
    top = np.array([rng.permutation(len(SPECS))[:k] for _ in range(n)], dtype=np.intp)
    picked = labeller.picked(columns, top)
    assert len(picked.own_at) > 0  # the case under test: labels from the table and apart
    as_list = labeller.labels(columns, top)
    scores = ScoreColumns(
        lead_ids=[f"L-{i}" for i in range(n)],
        probability=rng.random(n),
        band=rng.integers(0, 3, n).astype(np.int8),
        rank=rng.permutation(n) + 1,
        logit=rng.normal(size=n),
        reasons_per_lead=k,
        reason_feature=top.reshape(-1).astype(np.int64),
        reason_label=picked,
        reason_contribution=rng.normal(size=n * k),
        base_value=0.5,
        model_name="m",
        model_version="2",
        feature_names=[spec.name for spec in SPECS],
    )
    answer = pb.ScoreLeadsResponse.FromString(lead_codec.score_columns_answer(scores))
    assert list(answer.columns.reason_label) == as_list == picked.tolist()
    assert answer == naive(dataclasses.replace(scores, reason_label=as_list))
    encoded = lead_codec._ENCODED_TABLES[picked.table]
    lead_codec.score_columns_answer(scores)
    assert lead_codec._ENCODED_TABLES[picked.table] is encoded  # encoded once per table
    held = len(lead_codec._ENCODED_TABLES)
    del labeller, picked, scores
    gc.collect()
    assert len(lead_codec._ENCODED_TABLES) == held - 1  # a reloaded model's table is let go


def test_packed_varints_of_every_length() -> None:
    values = np.array([0, 1, 127, 128, 16_383, 16_384, 2**21 - 1, 2**21, 2**28, 2**32 - 1])
    message = pb.ScoreColumns()
    message.MergeFromString(lead_codec._packed_varints(lead_codec._RANK, values))
    assert list(message.rank) == values.tolist()
    with pytest.raises(ValueError):
        lead_codec._packed_varints(lead_codec._RANK, np.array([-1]))
