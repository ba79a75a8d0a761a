"""Checks on what clients send to the notes store. Each failure names the field and the rule."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime

from retrieval.types import NOTE_KINDS, NoteRecord
from runtimes.errors import InvalidInput, shown
from runtimes.ids import MAX_ID_CHARS, check_id  # the one id rule, shared by every API
from runtimes.types import FeatureValue

MAX_NOTE_CHARS = 20_000
MAX_TITLE_CHARS = 500
MAX_QUERY_CHARS = 2_000
MAX_TOP_K = 50
MAX_FEATURES = 256
MAX_BATCH = 1_000
"""Notes per index call: bounds the memory and the time one call holds the write lock."""


def check_tenant(tenant: str) -> str:
    return check_id(tenant, "tenant")


def check_kinds(kinds: Sequence[str]) -> tuple[str, ...]:
    for kind in kinds:
        if kind not in NOTE_KINDS:
            raise InvalidInput(
                f"kind {shown(kind)} is unknown; expected one of {', '.join(NOTE_KINDS)}"
            )
    return tuple(dict.fromkeys(kinds))


def check_aware(value: datetime | None, field: str) -> datetime | None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise InvalidInput(f"{field} has no time zone; send an aware timestamp (UTC)")
    return value


def check_note(note: NoteRecord) -> None:
    """Raises InvalidInput naming what is wrong with one note."""
    check_id(note.note_id, "note_id")
    if note.lead_id:
        check_id(note.lead_id, "lead_id")
    elif note.kind != "document":
        raise InvalidInput(
            f"lead_id is empty; only kind 'document' (a firm document) may belong to no lead, "
            f"this note is kind {note.kind!r}"
        )
    check_kinds([note.kind])
    if not note.text.strip():
        raise InvalidInput("text is empty")
    if len(note.text) > MAX_NOTE_CHARS:
        raise InvalidInput(f"text has {len(note.text)} characters; the limit is {MAX_NOTE_CHARS}")
    if len(note.title) > MAX_TITLE_CHARS:
        raise InvalidInput(
            f"title has {len(note.title)} characters; the limit is {MAX_TITLE_CHARS}"
        )
    check_aware(note.created_at, "created_at")


def check_query(query: str, top_k: int) -> None:
    if not query.strip():
        raise InvalidInput("query is empty")
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidInput(f"query has {len(query)} characters; the limit is {MAX_QUERY_CHARS}")
    if not 1 <= top_k <= MAX_TOP_K:
        raise InvalidInput(f"top_k must be between 1 and {MAX_TOP_K}, got {top_k}")


def check_profile(lead_id: str, features: Mapping[str, FeatureValue], field: str) -> None:
    check_id(lead_id, f"{field}.lead_id")
    if len(features) > MAX_FEATURES:
        raise InvalidInput(f"{field} has {len(features)} features; the limit is {MAX_FEATURES}")
    for name, value in features.items():
        if not name or len(name) > MAX_ID_CHARS:
            raise InvalidInput(f"{field} has a feature name that is empty or too long")
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidInput(f"{field}.features[{name!r}] is {value}; send a finite number")
        if value is not None and not isinstance(value, int | float | str | bool):
            raise InvalidInput(
                f"{field}.features[{name!r}] has type {type(value).__name__}; "
                "expected a number, a category string, a flag or None"
            )
