"""Store-neutral filters: built here once, translated by each backend into its own models.

:func:`tenant_filter` is the only way the store builds a filter, so every read, count and delete
sent on a caller's behalf carries the caller's tenant condition first.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Match:
    key: str
    value: str | int


@dataclass(frozen=True, slots=True)
class MatchAny:
    key: str
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Range:
    key: str
    gte: float | None = None
    lte: float | None = None


Condition = Match | MatchAny | Range


@dataclass(frozen=True, slots=True)
class Filter:
    must: tuple[Condition, ...] = ()
    must_not: tuple[Condition, ...] = ()


def tenant_filter(tenant: str, *must: Condition) -> Filter:
    """The tenant condition comes first, always."""
    if not tenant:
        raise ValueError("tenant is required")
    return Filter(must=(Match("tenant", tenant), *must))


def unscoped_filter(*, must_not: tuple[Condition, ...]) -> Filter:
    """A start-up check across tenants (never a caller's query): the embedder check."""
    return Filter(must_not=must_not)
