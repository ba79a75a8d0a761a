"""The small-request fast paths equal the general paths: same matrix, same errors, same scores.

Each fast path (row-wise encoding, plain-Python ranks and top reasons) is run side by side with
the vectorised path it shortcuts, on the committed lead model's schema and on values chosen to
hit every branch: missing, wrongly typed, out of range, non-finite, unknown names, and ties.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from runtimes import schema as schema_module
from runtimes import scoring
from runtimes.errors import InvalidInput
from runtimes.model_config import find_config, load_config
from runtimes.schema import FeatureSchema, FeatureSpec
from runtimes.types import BAND_ORDER, LeadColumn, LeadInput, Reason

MODEL_DIR = Path(__file__).resolve().parents[2] / "runtimes" / "bundled_models" / "lead_scorer"


@pytest.fixture(scope="module")
def schema() -> FeatureSchema:
    return FeatureSchema.from_config(load_config(find_config(MODEL_DIR, MODEL_DIR / "1")).raw)


def good_value(spec: FeatureSpec, rng: random.Random) -> Any:
    if spec.kind == "number":
        low = max(spec.minimum, -1e6)
        high = min(spec.maximum, 1e6)
        value = rng.uniform(low, high)
        return round(value) if rng.random() < 0.3 else value
    if spec.kind == "category":
        return rng.choice(spec.categories)
    return rng.random() < 0.5


def bad_value(spec: FeatureSpec, rng: random.Random) -> Any:
    choices: list[Any] = [None, "not-a-number", 1.5, True, float("nan"), float("inf"), [1]]
    if spec.kind == "number":
        choices += [spec.minimum - 1.0, spec.maximum * 2 + 1.0, -float("inf")]
    if spec.kind == "category":
        choices += ["no_such_category", 3]
    return rng.choice(choices)


def random_leads(schema: FeatureSchema, count: int, rng: random.Random, bad: float) -> list:
    leads = []
    for i in range(count):
        features: dict[str, Any] = {}
        for spec in schema.specs:
            roll = rng.random()
            if roll < bad:
                features[spec.name] = bad_value(spec, rng)
            elif roll < bad + 0.1 and (bad > 0 or not spec.required):
                continue  # absent: the default, or (required) an error
            else:
                features[spec.name] = good_value(spec, rng)
        if rng.random() < bad / 4:
            features["no_such_feature"] = 1.0
        lead_id = "" if rng.random() < bad / 8 else f"L-{i}"
        leads.append(LeadInput(lead_id, features))
    return leads


def outcome(encode: Any, leads: list[LeadInput]) -> tuple[str, Any]:
    try:
        return "ok", encode(leads)
    except InvalidInput as error:
        return "error", error.message


@pytest.mark.parametrize("bad", [0.0, 0.02, 0.1, 0.5])
def test_row_wise_encoding_equals_column_wise(schema: FeatureSchema, bad: float) -> None:
    rng = random.Random(int(bad * 1000))
    errors = 0
    for trial in range(400):
        leads = random_leads(schema, 1 + trial % 8, rng, bad)
        kind_rows, rows = outcome(schema.encode_rows, leads)
        kind_columns, columns = outcome(schema.encode_columns, leads)
        assert kind_rows == kind_columns, (leads, rows, columns)
        if kind_rows == "ok":
            assert rows.dtype == columns.dtype == np.float32
            assert rows.shape == columns.shape == (len(leads), schema.width)
            assert rows.flags.c_contiguous
            np.testing.assert_array_equal(rows, columns)
        else:
            errors += 1
            assert rows == columns
    if bad >= 0.1:
        assert errors > 100  # the error branches were really exercised
    if bad == 0.0:
        assert errors == 0


def test_encode_picks_the_row_wise_path_only_for_a_few_leads(schema: FeatureSchema) -> None:
    rng = random.Random(7)
    for count in (1, 8, 9, 40):
        leads = random_leads(schema, count, rng, 0.0)
        np.testing.assert_array_equal(schema.encode(leads), schema.encode_columns(leads))


@pytest.fixture(scope="module")
def served() -> Any:
    from runtimes.repository import ModelRepository

    return ModelRepository._load_version("lead_scorer", "1", MODEL_DIR / "1")


def outputs_with_ties(rows: int, width: int, rng: random.Random) -> dict[str, np.ndarray]:
    # Few distinct values, so equal probabilities and equal |contributions| are common.
    probability = rng.choices([0.01, 0.05, 0.2, 0.2, 0.5], k=rows)
    contributions = [
        [rng.choice([0.0, 0.5, -0.5, 1.25, -2.0]) for _ in range(width)] for _ in range(rows)
    ]
    return {
        "probability": np.array(probability, dtype=np.float32).reshape(rows, 1),
        "logit": np.array([rng.uniform(-4, 4) for _ in range(rows)], np.float32).reshape(rows, 1),
        "contributions": np.array(contributions, dtype=np.float32),
    }


@pytest.mark.parametrize("max_reasons", [0, 1, 3, 100])
def test_small_scores_equal_vectorised_scores(
    served: Any, max_reasons: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(max_reasons)
    for trial in range(60):
        count = 1 + trial % scoring.SMALL_LEADS
        leads = random_leads(served.schema, count, rng, 0.0)
        outputs = outputs_with_ties(count, served.width, rng)
        small = scoring.build_scores(served, leads, outputs, max_reasons)
        monkeypatch.setattr(scoring, "SMALL_LEADS", 0)
        general = scoring.build_scores(served, leads, outputs, max_reasons)
        monkeypatch.undo()
        assert small == general


def test_ties_rank_in_request_order_and_reasons_in_column_order(served: Any) -> None:
    leads = [LeadInput(f"L-{i}", {}) for i in range(3)]
    width = served.width
    contributions = np.zeros((3, width), dtype=np.float32)
    contributions[:, [2, 5, 9]] = [0.5, -0.5, 0.5]
    outputs = {
        "probability": np.array([[0.2], [0.3], [0.2]], dtype=np.float32),
        "logit": np.zeros((3, 1), dtype=np.float32),
        "contributions": contributions,
    }
    names = served.schema.names
    for small in (True, False):
        scores = (
            scoring.build_scores(served, leads, outputs, 3)
            if small
            else _general(served, leads, outputs, 3)
        )
        assert [s.rank for s in scores] == [2, 1, 3]
        assert [r.feature for r in scores[0].reasons] == [names[2], names[5], names[9]]


def _general(served: Any, leads: list, outputs: dict, k: int) -> list:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(scoring, "SMALL_LEADS", 0)
        return scoring.build_scores(served, leads, outputs, k)


def as_columns(leads: list[LeadInput]) -> tuple[list[str], dict[str, list[Any]]]:
    """The leads as ScoreLeadsRequest.columns carries them: a list per feature, None if absent."""
    names = dict.fromkeys(name for lead in leads for name in lead.features)
    return [lead.lead_id for lead in leads], {
        name: [lead.features.get(name) for lead in leads] for name in names
    }


@pytest.mark.parametrize("bad", [0.0, 0.02, 0.1, 0.5])
def test_lead_columns_encode_like_leads(schema: FeatureSchema, bad: float) -> None:
    """Same matrix, or the same message naming the same lead. (An unknown feature is a column's
    problem column-wise, so those are left out here and tested at the gateway.)"""
    rng = random.Random(1 + int(bad * 1000))
    errors = 0
    for trial in range(300):
        leads = [
            LeadInput(lead.lead_id, {k: v for k, v in lead.features.items() if k in schema.names})
            for lead in random_leads(schema, 1 + trial % 40, rng, bad)
        ]
        kind_leads, by_lead = outcome(schema.encode, leads)
        kind_columns, by_column = outcome(
            lambda ls: schema.encode_lead_columns(*as_columns(ls)), leads
        )
        assert kind_leads == kind_columns, (leads, by_lead, by_column)
        if kind_leads == "ok":
            assert by_column.dtype == np.float32 and by_column.flags.c_contiguous
            np.testing.assert_array_equal(by_lead, by_column)
        else:
            errors += 1
            assert by_lead == by_column
    if bad >= 0.1:
        assert errors > 100
    if bad == 0.0:
        assert errors == 0


@pytest.mark.parametrize("max_reasons", [0, 1, 3, 100])
def test_score_columns_equal_scores(served: Any, max_reasons: int) -> None:
    rng = random.Random(100 + max_reasons)
    for trial in range(60):
        count = 1 + trial % 40
        leads = random_leads(served.schema, count, rng, 0.0)
        outputs = outputs_with_ties(count, served.width, rng)
        scores = scoring.build_scores(served, leads, outputs, max_reasons)
        lead_ids, columns = as_columns(leads)
        table = scoring.build_score_columns(served, lead_ids, columns, outputs, max_reasons)
        k = table.reasons_per_lead
        assert list(table.lead_ids) == [s.lead_id for s in scores]
        assert table.probability.tolist() == [s.probability for s in scores]
        assert table.logit.tolist() == [s.logit for s in scores]
        assert table.rank.tolist() == [s.rank for s in scores]
        assert [BAND_ORDER[b] for b in table.band.tolist()] == [s.band for s in scores]
        assert len(table.reason_label) == k * count
        for i, score in enumerate(scores):
            reasons = [
                Reason(table.feature_names[j], label, contribution)
                for j, label, contribution in zip(
                    table.reason_feature[i * k : (i + 1) * k].tolist(),
                    table.reason_label[i * k : (i + 1) * k],
                    table.reason_contribution[i * k : (i + 1) * k].tolist(),
                    strict=True,
                )
            ]
            assert reasons == score.reasons
            assert table.base_value == score.base_value
            assert (table.model_name, table.model_version) == (
                score.model_name,
                score.model_version,
            )


def tricky_values(spec: FeatureSpec) -> list[Any]:
    """Values whose labels a grouping by value or formatting in numpy could get wrong: -0.0 and
    0.0, 1 and 1.0 and True, float32 and float64 of one number, ints beyond float64's
    precision, halves, None, numpy strings, unknown categories and values of the wrong type."""
    common: list[Any] = [None, None, "not a number", 7, 7.0, True, np.bool_(False)]
    if spec.kind == "number":
        return [
            *common, -0.0, 0.0, -0.0, 1, 1.0, np.float32(0.1), 0.1, np.float64(0.1), 2**60, 2**60 + 1,
            np.int64(3), 3, 1234567.891, 1234567.891, -5e9, 1e-7, np.int32(12),
            # halves and near-halves, scale boundaries of money, values too big for int64
            0.5, 1.5, 2.5, -2.5, -0.4, 1.25e6, 1.35e6, 9.95e6, 9.96e6, 999.5, 999499.0,
            999500.0, 9999.0, 9500.0, 9949.999, 1e12, 5e15, 1e300, -1e300,
        ]  # fmt: skip
    if spec.kind == "category":
        return [*common, *spec.categories, *spec.categories, np.str_(spec.categories[0]),
                "unheard_of", "unheard_of", ""]  # fmt: skip
    return [*common, True, False, np.bool_(True), False, 0, 1]


def test_reason_labels_equal_reason_label_value_by_value(schema: FeatureSchema) -> None:
    rng = random.Random(7)
    for spec in schema.specs:
        values = tricky_values(spec)
        floats = [v for v in values if type(v) is float]
        for _ in range(5):
            rng.shuffle(values)
            labels = spec.reason_labels(values)
            assert labels.tolist() == [spec.reason_label(v) for v in values], spec.name
            # A column of floats alone takes the numpy formatting path.
            labels = spec.reason_labels(floats)
            assert labels.tolist() == [spec.reason_label(v) for v in floats], spec.name
        assert spec.reason_labels([]).tolist() == []


@pytest.mark.parametrize("count", [17, 300])
def test_score_columns_label_repeated_and_missing_values_as_scores_do(
    served: Any, count: int
) -> None:
    """Many leads sharing few values (the unique-per-value path) and whole missing columns."""
    rng = random.Random(count)
    leads = random_leads(served.schema, count, rng, 0.0)
    optional = [spec.name for spec in served.schema.specs if not spec.required]
    for i, lead in enumerate(leads):
        lead.features["age"] = [30, 30.0, 45, -0.0, 0.0][i % 5]
        for name in optional:
            lead.features.pop(name, None)
    outputs = outputs_with_ties(count, served.width, rng)
    scores = scoring.build_scores(served, leads, outputs, 100)
    lead_ids, columns = as_columns(leads)
    table = scoring.build_score_columns(served, lead_ids, columns, outputs, 100)
    k = table.reasons_per_lead
    for i, score in enumerate(scores):
        assert table.reason_label[i * k : (i + 1) * k] == [r.label for r in score.reasons]


def typed_columns(
    leads: list[LeadInput], schema: FeatureSchema | None = None
) -> tuple[list[str], dict[str, Any]]:
    """``as_columns``, with each column typed as the wire would carry it (``LeadColumn``) where
    its present values are all floats, all bools or all strs; other columns stay lists. With a
    ``schema``, a category column whose present values are all its feature's categories also
    carries their codes, as ``gateway.category_codes`` reads them (a missing lead's slot holding
    the first category, as a client's placeholder may)."""
    lead_ids, columns = as_columns(leads)
    typed: dict[str, Any] = {}
    for name, values in columns.items():
        present = [v for v in values if v is not None]
        kinds = {type(v) for v in present}
        missing = np.array([v is None for v in values])
        if kinds == {float}:
            array: Any = np.array([0.0 if v is None else v for v in values], dtype=np.float64)
            typed[name] = LeadColumn("number", array, missing if missing.any() else None)
        elif kinds == {bool}:
            array = np.array([v is True for v in values])
            typed[name] = LeadColumn("boolean", array, missing if missing.any() else None)
        elif kinds == {str}:
            strings = ["" if v is None else v for v in values]
            marked = missing if missing.any() else None
            spec = schema.spec(name) if schema is not None and name in schema.names else None
            if spec is not None and spec.kind == "category" and set(present) <= set(spec.index):
                codes = np.array([0 if v is None else spec.index[v] for v in values])
                strings = [spec.categories[c] for c in codes]
                typed[name] = LeadColumn("category", strings, marked, codes, spec.categories)
            else:
                typed[name] = LeadColumn("category", strings, marked)
        else:
            typed[name] = values
    return lead_ids, typed


def float_leads(schema: FeatureSchema, count: int, rng: random.Random, bad: float) -> list:
    """``random_leads`` with every number a float (as the wire carries it) and no value of a
    type the wire cannot carry, so that most columns are typed."""
    leads = []
    for lead in random_leads(schema, count, rng, bad):
        features = {}
        for name, value in lead.features.items():
            if name not in schema.names or isinstance(value, list):
                continue
            if type(value) is int:
                value = float(value)
            features[name] = value
        leads.append(LeadInput(lead.lead_id, features))
    return leads


@pytest.mark.parametrize("with_codes", [False, True])
@pytest.mark.parametrize("bad", [0.0, 0.02, 0.1, 0.5])
def test_typed_columns_encode_like_leads(
    schema: FeatureSchema, bad: float, with_codes: bool
) -> None:
    """Typed columns (the wire's form) give the same matrix as leads, or, on the first bad value
    (out of range, non-finite, unknown category, missing where required, a bad lead id, a value
    of another kind), the same message naming the same lead; with category codes or without."""
    rng = random.Random(3 + int(bad * 1000))
    errors = typed = coded = 0
    for trial in range(300):
        leads = float_leads(schema, 1 + trial % 40, rng, bad)
        lead_ids, columns = typed_columns(leads, schema if with_codes else None)
        coded += sum(getattr(c, "codes", None) is not None for c in columns.values())
        typed += sum(isinstance(c, LeadColumn) for c in columns.values())
        kind_leads, by_lead = outcome(schema.encode, leads)
        kind_columns, by_column = outcome(
            lambda _, ids=lead_ids, typed_by_name=columns: schema.encode_lead_columns(
                ids, typed_by_name
            ),
            leads,
        )
        assert kind_leads == kind_columns, (leads, by_lead, by_column)
        if kind_leads == "ok":
            assert by_column.dtype == np.float32 and by_column.flags.c_contiguous
            np.testing.assert_array_equal(by_lead, by_column)
        else:
            errors += 1
            assert by_lead == by_column
    assert typed > (1000 if bad <= 0.1 else 50)  # columns typed, of 300 requests x 16
    assert coded > (100 if bad <= 0.02 else 5) if with_codes else coded == 0
    if bad >= 0.1:
        assert errors > 100
    if bad == 0.0:
        assert errors == 0


def test_a_typed_column_of_another_kind_is_refused_like_leads(schema: FeatureSchema) -> None:
    leads = [LeadInput(f"L-{i}", {"age": 40.0 + i, "channel": "web"}) for i in range(20)]
    lead_ids, columns = typed_columns(leads)
    columns["age"] = LeadColumn("boolean", np.ones(20, dtype=bool))
    with pytest.raises(InvalidInput) as caught:
        schema.encode_lead_columns(lead_ids, columns)
    assert caught.value.message == "lead 'L-0': feature 'age' must be a number, got bool True"
    # Every value missing: no value of the wrong kind, so nothing to refuse.
    columns["age"] = LeadColumn("boolean", np.ones(20, dtype=bool), np.ones(20, dtype=bool))
    matrix = schema.encode_lead_columns(lead_ids, columns)
    assert (matrix[:, schema.names.index("age")] == schema.spec("age").default).all()


@pytest.mark.parametrize("with_codes", [False, True])
@pytest.mark.parametrize("max_reasons", [1, 3, 9, 100])
def test_typed_score_columns_equal_scores(served: Any, max_reasons: int, with_codes: bool) -> None:
    """Reasons labelled from typed columns, with missing values, repeated values and ties; with
    category codes or without."""
    rng = random.Random(200 + max_reasons)
    for trial in range(40):
        count = 17 + trial * 7
        leads = float_leads(served.schema, count, rng, 0.0)
        for i, lead in enumerate(leads):
            if i % 3 == 0:
                lead.features["age"] = [30.0, 45.0, -0.0, 0.0, 99.5][i % 5]
        outputs = outputs_with_ties(count, served.width, rng)
        scores = scoring.build_scores(served, leads, outputs, max_reasons)
        lead_ids, columns = typed_columns(leads, served.schema if with_codes else None)
        assert any(c.missing is not None for c in columns.values())
        assert (columns["channel"].codes is not None) == with_codes
        table = scoring.build_score_columns(served, lead_ids, columns, outputs, max_reasons)
        k = table.reasons_per_lead
        for i, score in enumerate(scores):
            picked = table.reason_feature[i * k : (i + 1) * k].tolist()
            assert [table.feature_names[j] for j in picked] == [r.feature for r in score.reasons]
            assert table.reason_label[i * k : (i + 1) * k] == [r.label for r in score.reasons]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [1, 2, 3, 8, 9, 16])
def test_top_reasons_equal_a_stable_sort(k: int, dtype: type) -> None:
    """Ties (including -0.0 against 0.0) go by column, as the stable sort orders them; a row
    with a NaN anywhere takes the sort. float32 takes the sort of keys, float64 the argmax
    rounds (up to 8 reasons) or the sort; subnormals and the largest finite float32 order too."""
    rng = np.random.default_rng(k)
    tiny = np.finfo(np.float32).smallest_subnormal
    contributions = rng.choice(
        np.array([0.0, -0.0, 0.5, -0.5, 2.0, -2.0, np.inf, tiny, -2 * tiny, 3.4e38], dtype=dtype),
        size=(300, 16),
    )
    expected = np.argsort(-np.abs(contributions), axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(scoring._top_k_by_magnitude(contributions, k), expected)
    contributions[7, 3] = np.nan
    expected = np.argsort(-np.abs(contributions), axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(scoring._top_k_by_magnitude(contributions, k), expected)


def test_whole_numbers_are_worded_as_python_does() -> None:
    values = np.array(
        [0, 1, -1, 9, 10, 99, 9999, -9999, 10000, -10000, 123456, 2**62, -(2**62)], np.int64
    )
    assert schema_module._int_text(values).tolist() == [str(v) for v in values.tolist()]
    small = np.array([0, 7, -7, 9999, -9999], np.int64)
    assert schema_module._int_text(small).tolist() == ["0", "7", "-7", "9999", "-9999"]
    assert schema_module._int_text(np.array([], np.int64)).tolist() == []


@pytest.mark.parametrize(
    "value", [math.nan, math.inf, -math.inf, -1.0, 101.0, 3e38, -0.0, 0.0, 100.0, 5e-324]
)
def test_typed_numbers_checked_a_kind_at_a_time_refuse_what_leads_refuse(value: float) -> None:
    """Number columns with no missing value are range-checked together, against finite bounds
    (so that NaN and the infinities fail one comparison): an unbounded feature still refuses the
    non-finite, a bounded one its range's outside, each with the lead path's message."""
    schema = FeatureSchema.from_config(
        {
            "features": [
                {"name": "free", "type": "number"},
                {"name": "pct", "type": "number", "min": 0, "max": 100},
                {"name": "flag", "type": "boolean"},
            ]
        }
    )
    for name in ("free", "pct"):
        values = [1.0, 2.0, 3.0]
        values[1] = value
        leads = [
            LeadInput(f"L-{i}", {"free": 7.0, "pct": 7.0, "flag": i == 1, name: v})
            for i, v in enumerate(values)
        ]
        lead_ids, columns = typed_columns(leads)
        assert all(isinstance(c, LeadColumn) and c.missing is None for c in columns.values())
        kind_leads, by_lead = outcome(schema.encode, leads)
        kind_columns, by_column = outcome(
            lambda _, ids=lead_ids, typed=columns: schema.encode_lead_columns(ids, typed), leads
        )
        refused = not math.isfinite(value) or (name == "pct" and not 0 <= value <= 100)
        assert kind_leads == kind_columns == ("error" if refused else "ok")
        if refused:
            assert by_column == by_lead
            assert by_column.startswith("lead 'L-1': feature ")
        else:
            np.testing.assert_array_equal(by_column, by_lead)
