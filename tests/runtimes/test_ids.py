"""The one lead- and note-id rule, shared by every API."""

from __future__ import annotations

import pytest

from retrieval import validation
from runtimes.errors import InvalidInput
from runtimes.ids import MAX_ID_CHARS, check_id, id_problem, is_valid_id


@pytest.mark.parametrize("value", ["L-1", "a", "x" * MAX_ID_CHARS, "Az09._:@-"])
def test_valid_ids(value: str) -> None:
    assert is_valid_id(value) and id_problem(value) is None
    assert check_id(value, "lead_id") == value


@pytest.mark.parametrize("value", ["", " ", "a b", "a\x00", "é", "-a", "x" * (MAX_ID_CHARS + 1)])
def test_invalid_ids_are_named_with_the_field(value: str) -> None:
    assert not is_valid_id(value)
    with pytest.raises(InvalidInput, match=r"^lead_id "):
        check_id(value, "lead_id")


def test_the_notes_apis_use_the_same_rule() -> None:
    assert validation.check_id is check_id
