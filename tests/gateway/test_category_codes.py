"""Category codes read from a column's wire bytes: exactly the positions a dict lookup of each
value gives when every value is a category, and None (the ordinary path) whenever not."""

from __future__ import annotations

import random

import numpy as np
import pytest

from gateway import lead_codec
from gateway.category_codes import CategoryForms, forms_of
from leadgw_client.pb.leadgw.v1 import lead_service_pb2 as pb

CHANNELS = ("referral", "web", "event", "seminar", "partner", "cold_list")
# Lengths 1 to 127 (one length byte), multi-byte UTF-8, a shared prefix, equal lengths.
AWKWARD = ("a", "b", "ab", "ba", "é", "référence", "x" * 127, "x" * 126 + "y", "日本", "-")


def wire(values: list[str]) -> bytes:
    return pb.CategoryColumn(values=values).SerializeToString()


def lookup(categories: tuple[str, ...], values: list[str]) -> list[int]:
    index = {c: i for i, c in enumerate(categories)}
    return [index[v] for v in values]


@pytest.mark.parametrize("categories", [CHANNELS, AWKWARD, ("only",)])
@pytest.mark.parametrize("n", [1, 2, 7, 1000])
def test_codes_are_each_values_position(categories: tuple[str, ...], n: int) -> None:
    rng = random.Random(n)
    forms = CategoryForms(categories)
    assert forms.usable
    values = [rng.choice(categories) for _ in range(n)]
    codes = forms.codes(wire(values), n)
    assert codes is not None
    assert codes.tolist() == lookup(categories, values)
    assert forms.values(codes) == values


@pytest.mark.parametrize(
    "odd",
    [
        "unknown",  # not a category
        "",  # a missing lead's usual placeholder
        "abcdefghij",  # 10 bytes: its length byte is the tag byte
        "web\nweb",  # holds the tag byte
        "seminar\n",
        "x" * 130,  # a two-byte length
        "Web",  # differs from a category in one byte
        "sxminar",  # the same length and telling byte as "seminar", other text
        "webx",
    ],
)
@pytest.mark.parametrize("at", [0, 5, 999])
def test_a_column_with_any_other_value_gives_none(odd: str, at: int) -> None:
    rng = random.Random(at)
    values = [rng.choice(CHANNELS) for _ in range(1000)]
    values[at] = odd
    assert forms_of(CHANNELS).codes(wire(values), 1000) is None


def test_a_count_other_than_the_columns_gives_none() -> None:
    values = list(CHANNELS)
    forms = forms_of(CHANNELS)
    assert forms.codes(wire(values), len(values) + 1) is None
    assert forms.codes(wire(values), len(values) - 1) is None
    assert forms.codes(b"", 0) is None  # nothing to gain: the ordinary path


def test_random_bytes_never_give_wrong_codes() -> None:
    """Whatever the bytes, codes are either None or the exact reading of the column."""
    rng = random.Random(7)
    forms = forms_of(CHANNELS)
    alphabet = [*CHANNELS, "\n", "s", "p", "sem", "\x07", "\x08referral"]
    for _ in range(3000):
        values = ["".join(rng.choices(alphabet, k=rng.randint(1, 2))) for _ in range(5)]
        data = wire(values)
        codes = forms.codes(data, 5)
        if codes is not None:
            assert forms.values(codes) == values
            assert pb.CategoryColumn.FromString(data).values == values


@pytest.mark.parametrize(
    "categories",
    [
        ("abcdefghij", "web"),  # 10 bytes long
        ("line\nbreak", "web"),
        ("x" * 128, "web"),
        ("ab", "ba", "aa", "bb"),  # no one offset tells them apart
        (),
    ],
)
def test_categories_it_cannot_read_leave_the_ordinary_path(categories: tuple[str, ...]) -> None:
    forms = CategoryForms(categories)
    assert not forms.usable
    assert forms.codes(wire(list(categories) * 3), 3 * len(categories)) is None


def test_decoded_columns_carry_codes_only_when_every_value_is_a_category() -> None:
    columns = pb.LeadColumns(lead_ids=["L-0", "L-1", "L-2"])
    columns.features.add(name="channel").categories.values.extend(["web", "event", "web"])
    columns.features.add(name="other").categories.values.extend(["web", "nope", "web"])
    columns.features.add(name="unlisted").categories.values.extend(["web", "web", "web"])
    lists = {"channel": CHANNELS, "other": CHANNELS}
    _, typed = lead_codec.lead_columns_from_pb(columns, lists)
    channel = typed["channel"]
    assert channel.codes is not None
    assert channel.codes.tolist() == [1, 2, 1]
    assert channel.categories == CHANNELS
    assert channel.values == ["web", "event", "web"]
    for name in ("other", "unlisted"):
        assert typed[name].codes is None
        assert typed[name].values == list(columns.features[[*typed].index(name)].categories.values)
    # Without category lists, as before: no codes.
    _, plain = lead_codec.lead_columns_from_pb(columns)
    assert plain["channel"].codes is None
    assert plain["channel"].values == channel.values
    assert np.array_equal(channel.codes, [CHANNELS.index(v) for v in channel.values])
