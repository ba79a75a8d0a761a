"""The feature schema: strict column-wise encoding, precise errors, readable reason labels."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from runtimes.errors import InvalidInput
from runtimes.schema import FeatureSchema, format_money
from runtimes.types import LeadInput


def config() -> dict[str, Any]:
    return {
        "features": [
            {
                "name": "age",
                "type": "number",
                "label": "Age",
                "min": 18.0,
                "max": 100.0,
                "required": False,
                "default": 45.0,
                "format": "{:.0f}",
            },
            {
                "name": "investable_assets",
                "type": "number",
                "label": "Investable assets",
                "min": 0.0,
                "max": 1e10,
                "required": False,
                "default": -1.0,
                "format": "money",
            },
            {
                "name": "days_since_last_touch",
                "type": "number",
                "label": "Last touch",
                "min": 0.0,
                "max": 3650.0,
                "required": False,
                "default": -1.0,
                "format": "{:.0f}",
                "template": "Last touch {value} days ago",
                "template_one": "Last touch {value} day ago",
                "label_missing": "Never contacted",
            },
            {
                "name": "channel",
                "type": "category",
                "label": "Acquisition channel",
                "categories": ["referral", "web", "cold_list"],
                "on_unknown": "error",
                "required": True,
                "template": "Came via {value}",
            },
            {
                "name": "segment",
                "type": "category",
                "label": "Segment",
                "categories": ["mass", "affluent", "hnw"],
                "on_unknown": "default",
                "required": False,
                "default": "mass",
            },
            {
                "name": "retiring_within_5y",
                "type": "boolean",
                "label": "Retiring within 5 years",
                "label_true": "Retiring within 5 years",
                "label_false": "Not retiring within 5 years",
                "required": False,
                "default": False,
            },
            {
                "name": "existing_accounts",
                "type": "number",
                "label": "Existing accounts",
                "min": 0.0,
                "max": 50.0,
                "required": True,
            },
        ]
    }


@pytest.fixture
def schema() -> FeatureSchema:
    return FeatureSchema.from_config(config())


def full(**overrides: Any) -> dict[str, Any]:
    features: dict[str, Any] = {
        "age": 61.0,
        "investable_assets": 1.2e6,
        "days_since_last_touch": 3,
        "channel": "referral",
        "segment": "hnw",
        "retiring_within_5y": True,
        "existing_accounts": 2,
    }
    features.update(overrides)
    return features


def message_of(schema: FeatureSchema, leads: list[LeadInput]) -> str:
    with pytest.raises(InvalidInput) as caught:
        schema.encode(leads)
    assert caught.value.status == "INVALID_ARGUMENT"
    return caught.value.message


def test_names_and_width_follow_config_order(schema: FeatureSchema) -> None:
    assert schema.names == [table["name"] for table in config()["features"]]
    assert schema.width == 7


def test_encodes_valid_leads_in_column_order(schema: FeatureSchema) -> None:
    leads = [
        LeadInput("L-1", full()),
        LeadInput("L-2", full(age=np.float64(30.5), channel="cold_list", retiring_within_5y=False)),
    ]
    encoded = schema.encode(leads)
    assert encoded.dtype == np.float32
    assert encoded.flags.c_contiguous
    np.testing.assert_array_equal(
        encoded,
        np.array(
            [[61, 1.2e6, 3, 0, 2, 1, 2], [30.5, 1.2e6, 3, 2, 2, 0, 2]],
            dtype=np.float32,
        ),
    )


def test_missing_or_none_uses_defaults(schema: FeatureSchema) -> None:
    absent = LeadInput("L-1", {"channel": "web", "existing_accounts": 0})
    nones = LeadInput(
        "L-2",
        {
            "channel": "web",
            "existing_accounts": 0,
            "age": None,
            "investable_assets": None,
            "days_since_last_touch": None,
            "segment": None,
            "retiring_within_5y": None,
        },
    )
    encoded = schema.encode([absent, nones])
    expected = np.array([45, -1, -1, 1, 0, 0, 0], dtype=np.float32)
    np.testing.assert_array_equal(encoded, np.stack([expected, expected]))


def test_unknown_category_with_default_policy_uses_default(schema: FeatureSchema) -> None:
    encoded = schema.encode([LeadInput("L-1", full(segment="ultra"))])
    assert encoded[0, schema.names.index("segment")] == 0.0


def test_empty_request_gives_empty_matrix(schema: FeatureSchema) -> None:
    assert schema.encode([]).shape == (0, 7)


@pytest.mark.parametrize(
    ("features", "expected"),
    [
        (full(age=250), "lead 'L-17': feature 'age' is 250, outside [18, 100]"),
        (full(age=17.5), "lead 'L-17': feature 'age' is 17.5, outside [18, 100]"),
        (full(agee=50), "lead 'L-17': unknown feature 'agee'"),
        (
            {k: v for k, v in full().items() if k != "channel"},
            "lead 'L-17': feature 'channel' is required but missing",
        ),
        (
            full(existing_accounts=None),
            "lead 'L-17': feature 'existing_accounts' is required but missing",
        ),
        (full(age="61"), "lead 'L-17': feature 'age' must be a number, got str '61'"),
        (full(age=True), "lead 'L-17': feature 'age' must be a number, got bool True"),
        (
            full(channel=3),
            "lead 'L-17': feature 'channel' must be a category name (string), got int 3",
        ),
        (
            full(retiring_within_5y=1),
            "lead 'L-17': feature 'retiring_within_5y' must be true or false, got int 1",
        ),
        (
            full(retiring_within_5y="yes"),
            "lead 'L-17': feature 'retiring_within_5y' must be true or false, got str 'yes'",
        ),
        (full(age=math.nan), "lead 'L-17': feature 'age' must be a finite number, got nan"),
        (
            full(investable_assets=math.inf),
            "lead 'L-17': feature 'investable_assets' must be a finite number, got inf",
        ),
        (
            full(channel="tv"),
            "lead 'L-17': feature 'channel' has unknown category 'tv'; "
            "expected one of: referral, web, cold_list",
        ),
        (
            full(investable_assets=-1.0),
            "lead 'L-17': feature 'investable_assets' is -1, outside [0, 1e+10]",
        ),
    ],
)
def test_bad_input_names_lead_and_feature(
    schema: FeatureSchema, features: dict[str, Any], expected: str
) -> None:
    assert message_of(schema, [LeadInput("L-17", features)]) == expected


def test_empty_lead_id_is_refused_with_its_position(schema: FeatureSchema) -> None:
    leads = [LeadInput("L-1", full()), LeadInput("", full())]
    assert message_of(schema, leads) == "lead at position 1: empty lead id"


def test_long_bad_values_are_cut_short_in_messages(schema: FeatureSchema) -> None:
    message = message_of(schema, [LeadInput("L-1", full(channel="x" * 500))])
    assert len(message) < 200
    assert "..." in message


@pytest.mark.parametrize(
    "bad_leads",
    [
        # The later lead's problem is in an earlier column: request order still wins.
        [
            ("L-2", full(existing_accounts=99)),
            ("L-3", full(age=5)),
        ],
        [
            ("L-2", full(channel="tv")),
            ("L-3", full(unknown_field=1)),
        ],
        [
            ("L-2", full(age="x")),
            ("L-3", {}),
        ],
        # Mixed: a well-typed column fails at L-2, a column with a bad type only at L-3.
        [
            ("L-2", full(investable_assets=None, existing_accounts=-3)),
            ("L-3", full(age="x")),
        ],
    ],
)
def test_first_bad_lead_in_request_order_is_reported(
    schema: FeatureSchema, bad_leads: list[tuple[str, dict[str, Any]]]
) -> None:
    leads = [LeadInput("L-1", full())] + [LeadInput(i, f) for i, f in bad_leads]
    leads.append(LeadInput("L-4", full()))
    assert message_of(schema, leads).startswith("lead 'L-2':")


def test_column_wise_encoding_matches_lead_by_lead(schema: FeatureSchema) -> None:
    rng = np.random.default_rng(3)
    leads = []
    for i in range(300):
        features: dict[str, Any] = {
            "channel": str(rng.choice(["referral", "web", "cold_list"])),
            "existing_accounts": int(rng.integers(0, 51)),
        }
        if rng.random() < 0.7:
            features["age"] = float(rng.uniform(18, 100))
        if rng.random() < 0.5:
            features["investable_assets"] = None
        if rng.random() < 0.5:
            features["segment"] = str(rng.choice(["mass", "affluent", "hnw", "other"]))
        if rng.random() < 0.5:
            features["retiring_within_5y"] = bool(rng.random() < 0.5)
        leads.append(LeadInput(f"L-{i}", features))
    together = schema.encode(leads)
    one_by_one = np.concatenate([schema.encode([lead]) for lead in leads])
    np.testing.assert_array_equal(together, one_by_one)


@pytest.mark.parametrize(
    ("feature", "value", "label"),
    [
        ("retiring_within_5y", True, "Retiring within 5 years"),
        ("retiring_within_5y", False, "Not retiring within 5 years"),
        ("retiring_within_5y", None, "Retiring within 5 years unknown"),
        ("investable_assets", 1_200_000.0, "Investable assets $1.2M"),
        ("investable_assets", 350_000, "Investable assets $350K"),
        ("investable_assets", None, "Investable assets unknown"),
        ("channel", "referral", "Came via referral"),
        ("channel", "cold_list", "Came via cold list"),
        ("segment", "hnw", "Segment: hnw"),
        ("days_since_last_touch", 3, "Last touch 3 days ago"),
        ("days_since_last_touch", 1, "Last touch 1 day ago"),
        ("days_since_last_touch", 1.2, "Last touch 1 day ago"),
        ("days_since_last_touch", None, "Never contacted"),
        ("age", 61.4, "Age 61"),
    ],
)
def test_reason_labels_read_naturally(
    schema: FeatureSchema, feature: str, value: Any, label: str
) -> None:
    # As scoring words reasons: the column's labeller.
    assert schema.labellers[schema.names.index(feature)](value) == label


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (900, "$900"),
        (12_600, "$13K"),
        (1_240, "$1.2K"),
        (999_700, "$1M"),
        (25_000_000, "$25M"),
        (3e9, "$3B"),
    ],
)
def test_format_money(amount: float, text: str) -> None:
    assert format_money(amount) == text


@pytest.mark.parametrize(
    ("table", "complaint"),
    [
        ({"name": "x", "type": "text"}, "type must be one of"),
        ({"name": "x", "type": "number", "required": False}, "needs a default"),
        ({"name": "x", "type": "number", "min": 5.0, "max": 1.0}, "above max"),
        ({"name": "x", "type": "category", "categories": []}, "non-empty unique"),
        (
            {"name": "x", "type": "category", "categories": ["a"], "default": "b"},
            "not a category",
        ),
        (
            {"name": "x", "type": "category", "categories": ["a"], "on_unknown": "default"},
            "needs a default",
        ),
    ],
)
def test_bad_config_is_refused_naming_the_feature(table: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint) as caught:
        FeatureSchema.from_config({"features": [table]})
    assert "'x'" in str(caught.value)


def test_duplicate_and_absent_features_are_refused() -> None:
    table = {"name": "x", "type": "boolean"}
    with pytest.raises(ValueError, match="duplicate"):
        FeatureSchema.from_config({"features": [table, table]})
    with pytest.raises(ValueError, match="no \\[\\[features\\]\\]"):
        FeatureSchema.from_config({"name": "m"})
