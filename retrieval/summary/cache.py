"""A bounded LRU cache of finished LLM summaries, per process."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from retrieval.summary.types import SummaryResult
from runtimes.types import FeatureValue


@dataclass(frozen=True, slots=True)
class CacheKey:
    """Everything a summary depends on. The lead's notes version changes with any note of the
    lead, so a new note makes the old entry unreachable (it ages out of the LRU)."""

    tenant: str
    lead_id: str
    features: tuple[tuple[str, str, str], ...]
    note_ids: tuple[str, ...]
    notes_version: str
    prompt_version: str
    llm_model: str
    score_model: str
    score_version: str


def feature_snapshot(features: Mapping[str, FeatureValue]) -> tuple[tuple[str, str, str], ...]:
    """A hashable, order-free snapshot; the type is kept so that True and 1.0 differ."""
    return tuple(sorted((k, type(v).__name__, repr(v)) for k, v in features.items()))


@dataclass(frozen=True, slots=True)
class CachedSummary:
    chunks: tuple[str, ...]
    result: SummaryResult


class SummaryCache:
    def __init__(self, max_entries: int) -> None:
        self._max = max_entries
        self._entries: OrderedDict[CacheKey, CachedSummary] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: CacheKey) -> CachedSummary | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key: CacheKey, entry: CachedSummary) -> None:
        if self._max <= 0:
            return
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
