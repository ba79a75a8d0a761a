"""The whole-request labeller (``runtimes.column_labels``) writes, for every pick, exactly the
label ``FeatureSpec.reason_label`` writes for that lead's value: on a schema with a feature of
each way to a key (flag, whole number, money, category) and one with no table, and on columns
that leave the keys: missing values, absent features, values beyond a table, money ties,
unknown categories, columns of another kind and untyped lists."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from runtimes.column_labels import ColumnLabeller
from runtimes.schema import FeatureSchema, FeatureSpec
from runtimes.types import LeadColumn

SPECS = [
    FeatureSpec.from_table(table)
    for table in (
        {"name": "age", "type": "number", "format": "{:.0f}", "min": 18, "max": 100},
        {"name": "assets", "type": "number", "format": "money", "min": -1e300},
        {
            "name": "days",
            "type": "number",
            "format": "{:.0f}",
            "template": "{value} days ago",
            "template_one": "{value} day ago",
        },
        {"name": "score", "type": "number", "format": "{:.1f}"},  # no table: its own path
        {"name": "retiring", "type": "boolean", "label_missing": "Retiring: not recorded"},
        {"name": "channel", "type": "category", "categories": ["web", "referral", "event_2"]},
        {"name": "opens", "type": "number", "format": "{:.0f}", "max": 1000},
    )
]
SCHEMA = FeatureSchema(SPECS)
LEADS = 400
K = 3


def column_values(spec: FeatureSpec, rng: random.Random) -> list[Any]:
    """One value per lead, None where missing; edges of every table mixed in."""
    out: list[Any] = []
    for _ in range(LEADS):
        if rng.random() < 0.1:
            out.append(None)
        elif spec.kind == "boolean":
            out.append(rng.random() < 0.5)
        elif spec.kind == "category":
            out.append(rng.choice(spec.categories))
        elif spec.value_format == "money":
            out.append(
                rng.choice([rng.uniform(0, 2e9), 1.25e6, 999.5, 9.95e6, -1.2e6, -0.0, 0.4, 5e15])
            )
        elif spec.name == "age":
            out.append(float(rng.randint(18, 100)) + rng.choice([0.0, 0.5, 0.25]))
        else:
            out.append(
                rng.choice([float(rng.randint(0, 500)), -0.0, 2.5, 9999.5, 12_345.0, 1.0, 0.6, 1.4])
            )
    return out


def typed(spec: FeatureSpec, values: list[Any]) -> LeadColumn:
    missing = np.array([v is None for v in values])
    marks = missing if missing.any() else None
    if spec.kind == "category":
        return LeadColumn("category", ["" if v is None else v for v in values], marks)
    dtype = bool if spec.kind == "boolean" else np.float64
    filler = False if spec.kind == "boolean" else np.nan  # a missing slot holds anything
    return LeadColumn(
        spec.kind, np.array([filler if v is None else v for v in values], dtype), marks
    )


def picks(rng: random.Random) -> np.ndarray:
    return np.array([rng.sample(range(len(SPECS)), K) for _ in range(LEADS)], dtype=np.intp)


def expected(values: list[list[Any] | None], top: np.ndarray) -> list[str]:
    return [
        SPECS[j].reason_label(None if values[j] is None else values[j][lead])  # type: ignore[index]
        for lead, chosen in enumerate(top.tolist())
        for j in chosen
    ]


@pytest.mark.parametrize("seed", range(6))
def test_every_pick_gets_the_label_reason_label_writes(seed: int) -> None:
    rng = random.Random(seed)
    values: list[list[Any] | None] = [column_values(spec, rng) for spec in SPECS]
    columns: list[Any] = [typed(spec, v) for spec, v in zip(SPECS, values, strict=True)]
    if seed % 2:
        values[2] = columns[2] = None  # a feature absent for every lead (has a table)
        values[3] = columns[3] = None  # and one without
    if seed % 3 == 1:
        values[5][0] = "unheard_of"  # type: ignore[index]  # unknown: its own path, no wrong key
        columns[5] = typed(SPECS[5], values[5])  # type: ignore[arg-type]
    top = picks(rng)
    assert SCHEMA.column_labeller.labels(columns, top) == expected(values, top)


def test_columns_of_another_kind_and_plain_lists_take_their_own_path() -> None:
    rng = random.Random(11)
    values: list[list[Any] | None] = [column_values(spec, rng) for spec in SPECS]
    columns: list[Any] = [typed(spec, v) for spec, v in zip(SPECS, values, strict=True)]
    columns[0] = values[0]  # an untyped list
    values[4] = ["yes" if rng.random() < 0.5 else "no" for _ in range(LEADS)]
    columns[4] = LeadColumn("category", values[4], None)  # strings where flags belong
    top = picks(rng)
    assert ColumnLabeller(SPECS).labels(columns, top) == expected(values, top)


def test_values_beyond_a_table_leave_only_their_feature() -> None:
    """A day count past the whole-number table and an amount past the money table are worded
    by their own path; the other features' labels still come from the table."""
    values: list[list[Any] | None] = [
        [40.0] * LEADS,
        [1e300] * LEADS,
        [1e7] * LEADS,
        [1.25] * LEADS,
        [True] * LEADS,
        ["web"] * LEADS,
        [3.0] * LEADS,
    ]
    columns = [typed(spec, v) for spec, v in zip(SPECS, values, strict=True)]  # type: ignore[arg-type]
    top = np.tile(np.array([[1, 2, 0], [4, 5, 6]], dtype=np.intp), (LEADS // 2, 1))
    labels = ColumnLabeller(SPECS).labels(columns, top)
    assert labels == expected(values, top)
    assert labels[:3] == [SPECS[1].reason_label(1e300), "10000000 days ago", "Age 40"]


def test_no_picks_no_labels() -> None:
    assert ColumnLabeller(SPECS).labels([None] * len(SPECS), np.empty((0, K), np.intp)) == []
