"""The one rule for lead and note ids, on every API: ScoreLeads (per lead and column-wise), the
notes APIs and summaries. Ids end up in logs, metric labels, store keys and file names, so they
keep to a plain, printable alphabet and a bounded length."""

from __future__ import annotations

import re
from collections.abc import Sequence

from runtimes.errors import InvalidInput, shown

MAX_ID_CHARS = 128
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@\-]*")


def is_valid_id(value: str) -> bool:
    """The fast check, for hot loops; ``id_problem`` says what is wrong."""
    return len(value) <= MAX_ID_CHARS and _ID.fullmatch(value) is not None


# Many ids at once: joined by newlines (which no valid id holds), matched by one regex call.
_IDS = re.compile(rf"(?:[A-Za-z0-9][A-Za-z0-9._:@\-]{{0,{MAX_ID_CHARS - 1}}}\n)*")


def all_valid_ids(values: Sequence[str]) -> bool:
    """``all(map(is_valid_id, values))`` in one regex call instead of one per id."""
    joined = "\n".join(values) + "\n"
    # An id holding a newline would be read as two: the count of newlines catches it.
    return joined.count("\n") == len(values) and _IDS.fullmatch(joined) is not None


def id_problem(value: str) -> str | None:
    """What is wrong with an id, worded to follow its field's name; None if it is valid."""
    if not value:
        return "is empty"
    if len(value) > MAX_ID_CHARS:
        return f"has {len(value)} characters; the limit is {MAX_ID_CHARS}"
    if _ID.fullmatch(value) is None:
        return (
            f"{shown(value)} has characters outside letters, digits and . _ : @ - "
            "(or does not start with a letter or digit)"
        )
    return None


def check_id(value: str, field: str) -> str:
    """``value`` if it is a valid id, else InvalidInput naming ``field``."""
    problem = id_problem(value)
    if problem is not None:
        raise InvalidInput(f"{field} {problem}")
    return value
