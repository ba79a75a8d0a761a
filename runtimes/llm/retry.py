"""How long to wait before retrying an LLM request."""

from __future__ import annotations

import contextlib
import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

BASE_BACKOFF_S = 0.2
MAX_BACKOFF_S = 5.0


def backoff_delay(attempt: int, retry_after_s: float | None, rng: random.Random) -> float:
    """Delay before retry number ``attempt`` (1-based): the server's Retry-After when it sent
    one, else exponential backoff with full jitter so that callers do not retry in lockstep."""
    if retry_after_s is not None:
        return max(0.0, retry_after_s)
    ceiling = min(MAX_BACKOFF_S, BASE_BACKOFF_S * 2 ** (attempt - 1))
    return rng.uniform(ceiling / 2, ceiling)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date. None if absent/invalid."""
    if not value:
        return None
    value = value.strip()
    with contextlib.suppress(ValueError):  # not delta-seconds: maybe an HTTP date
        return max(0.0, float(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
