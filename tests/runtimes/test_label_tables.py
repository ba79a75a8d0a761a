"""Reason labels looked up in a feature's table are exactly the labels ``reason_label`` writes,
and every value a table cannot word exactly goes back to formatting, not to a wrong label."""

from __future__ import annotations

import numpy as np
import pytest

from runtimes import label_tables
from runtimes.schema import FeatureSpec
from runtimes.types import LeadColumn

MONEY = FeatureSpec.from_table(
    {"name": "investable_assets", "type": "number", "format": "money", "min": -1e300}
)
WHOLE = FeatureSpec.from_table(
    {
        "name": "days",
        "type": "number",
        "format": "{:.0f}",
        "template": "Last touch {value} days ago",
        "template_one": "Last touch 1 day ago",
    }
)

# Scale boundaries of money (0.9995 of each), halves and near-halves of tenths and of wholes,
# signs, zeros of both signs, and the largest wholes a table holds.
MONEY_EDGES = [
    0.0, -0.0, 0.4, 0.5, 1.5, 2.5, 999.4, 999.49, 999.5, 1000.0, 1049.0, 1050.0, 1051.0, 1250.0,
    9949.0, 9950.0, 9951.0, 9999.0, 10_000.0, 99_949.0, 999_499.0, 999_500.0, 1.25e6, 1.35e6,
    9.95e6, 9.96e6, 123_456_789.0, 9.9949e8, 9.995e8, 2.5e9, 999.4e9, 1e12, 5e15, -1.2e6,
    -999.5, -0.4, -3e9,
]  # fmt: skip
WHOLE_EDGES = [
    0.0, 0.4, 0.5, 0.6, 1.0, 1.4, 1.5, 2.5, 3.5, 52.0, 9998.5, 9999.0, 9999.4, 9999.5, 1e4, 1e5,
]  # fmt: skip


def labels_one_by_one(spec: FeatureSpec, values: np.ndarray) -> list[str]:
    return [spec.reason_label(float(v)) for v in values]


@pytest.mark.parametrize(("spec", "edges"), [(MONEY, MONEY_EDGES), (WHOLE, WHOLE_EDGES)])
def test_looked_up_labels_equal_reason_label(spec: FeatureSpec, edges: list[float]) -> None:
    rng = np.random.default_rng(5)
    random_values = np.concatenate(
        [
            rng.uniform(0, 1e4, 2000),
            np.round(rng.uniform(0, 1e4, 500), 1),
            10.0 ** rng.uniform(-2, 11, 2000),
            -(10.0 ** rng.uniform(-2, 11, 500)),
        ]
    )
    for values in (np.array(edges), random_values):
        column = LeadColumn("number", values)
        labels = spec.column_labels(column, np.arange(len(values)))
        assert labels.tolist() == labels_one_by_one(spec, values)


def test_tables_word_ordinary_values_themselves() -> None:
    """The table path is taken (not formatting) for ordinary amounts and counts, so the test
    above compares the tables, not only the fallback."""
    amounts = np.array([0.0, 950.0, 1200.0, 45_000.0, 1.2e6, 3.4e9, -2e6])
    looked_up = label_tables.money_labels(MONEY.template, MONEY.label, amounts)
    assert looked_up is not None
    assert looked_up.tolist() == labels_one_by_one(MONEY, amounts)
    assert looked_up.tolist()[:5] == [
        "Investable assets $0",
        "Investable assets $950",
        "Investable assets $1.2K",
        "Investable assets $45K",
        "Investable assets $1.2M",
    ]
    days = np.array([0.0, 3.0, 2.5, 9999.0])
    looked_up = label_tables.whole_labels(WHOLE.template, WHOLE.label, days)
    assert looked_up is not None
    assert looked_up.tolist() == labels_one_by_one(WHOLE, days)


@pytest.mark.parametrize(
    ("table", "spec", "values"),
    [
        ("money", MONEY, [1.0, 1.25e6]),  # 12.5 tenths of a million: too near a tie for numpy
        ("money", MONEY, [1.0, 2e12]),  # 2,000B: beyond the table
        ("money", MONEY, [1.0, float("nan")]),
        ("money", MONEY, [1.0, float("inf")]),
        ("whole", WHOLE, [1.0, -0.0]),  # "%.0f" shows "-0"
        ("whole", WHOLE, [1.0, -0.4]),  # "-0" as well
        ("whole", WHOLE, [1.0, 9999.5]),  # rounds to 10,000: beyond the table
        ("whole", WHOLE, [1.0, float("nan")]),
    ],
)
# NaN and infinities are values to refuse, not arithmetic errors: no RuntimeWarning either.
@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_values_a_table_cannot_word_leave_it(table: str, spec: FeatureSpec, values: list) -> None:
    lookup = label_tables.money_labels if table == "money" else label_tables.whole_labels
    array = np.array(values)
    assert lookup(spec.template, spec.label, array) is None
    column = LeadColumn("number", array)
    assert spec.column_labels(column, np.arange(len(array))).tolist() == [
        spec.reason_label(v) for v in values
    ]


def test_a_template_without_one_value_has_no_table() -> None:
    assert label_tables.whole_labels("{label}", "Age", np.array([1.0])) is None
    assert label_tables.money_labels("{value} or {value}", "Assets", np.array([1.0])) is None


def test_a_whole_table_stops_at_the_features_maximum() -> None:
    """Ages up to 100 need 101 labels, not 10,000; a value beyond (never valid input) is still
    worded right, by formatting."""
    age = FeatureSpec.from_table({"name": "age", "type": "number", "format": "{:.0f}", "max": 100})
    within = np.array([0.0, 18.0, 99.5, 100.0, 100.4])
    looked_up = label_tables.whole_labels(age.template, age.label, within, age.maximum)
    assert looked_up is not None
    assert looked_up.tolist() == labels_one_by_one(age, within)
    beyond = np.array([18.0, 100.5, 101.0, 250.0])
    assert label_tables.whole_labels(age.template, age.label, beyond, age.maximum) is None
    column = LeadColumn("number", beyond)
    assert age.column_labels(column, np.arange(4)).tolist() == labels_one_by_one(age, beyond)


@pytest.mark.parametrize("beyond", [False, True])
def test_a_value_shown_as_one_takes_the_singular_template(beyond: bool) -> None:
    """Through the whole-number table, and through formatting when a value beyond the table
    sends the column there: a value shown as 1 reads "1 day", every other value "days"."""
    values = np.array([0.0, 1.0, 0.6, 1.4, 2.0, *([1e5] if beyond else [])])
    labels = WHOLE.column_labels(LeadColumn("number", values), np.arange(len(values))).tolist()
    assert labels[:5] == [
        "Last touch 0 days ago",
        "Last touch 1 day ago",
        "Last touch 1 day ago",
        "Last touch 1 day ago",
        "Last touch 2 days ago",
    ]
    assert labels == labels_one_by_one(WHOLE, values)


def test_a_singular_template_is_only_for_numbers() -> None:
    with pytest.raises(ValueError, match="'flag': template_one is for numbers, not a boolean"):
        FeatureSpec.from_table({"name": "flag", "type": "boolean", "template_one": "x"})


def test_a_singular_template_on_money_is_a_config_error() -> None:
    """A money value is written "$1", never "1", so the template would silently never apply."""
    table = {"name": "assets", "type": "number", "format": "money", "template_one": "{label} $1"}
    with pytest.raises(
        ValueError, match="'assets': template_one is never used with format = 'money'"
    ):
        FeatureSpec.from_table(table)
    del table["template_one"]
    assert FeatureSpec.from_table(table).reason_label(1.0) == "Assets $1"


@pytest.mark.parametrize("key", ["template", "template_one"])
def test_a_template_with_another_placeholder_is_a_config_error(key: str) -> None:
    """Found when the model loads, not as a KeyError on the first lead it labels."""
    with pytest.raises(ValueError, match=rf"feature 'days': {key} '\{{days\}} ago' is not a"):
        FeatureSpec.from_table({"name": "days", "type": "number", key: "{days} ago"})
