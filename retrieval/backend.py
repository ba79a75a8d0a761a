"""What the notes store asks of a Qdrant engine, in plain data.

Two engines implement it: :class:`retrieval.edge_backend.EdgeBackend` (Qdrant Edge, embedded) and
:class:`retrieval.server_backend.ServerBackend` (a Qdrant server through qdrant-client). Their
methods block; the store runs them off the event loop, where the engine lives.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from retrieval.filters import Filter

NOTES = "notes"
LEADS = "leads"
REINDEX = "notes.reindex"
"""The collection ``leadgw notes reindex`` fills before it replaces ``NOTES`` (see reindex.py)."""
KEYWORDS = "bm25"
"""The sparse vector of BM25 keyword weights beside each note chunk's dense vector."""
RRF_K = 60
"""Reciprocal rank fusion: a point ranked r by one side adds 1 / (RRF_K + r) to its score."""

Payload = dict[str, Any]


@dataclass(frozen=True, slots=True)
class PointWrite:
    id: str
    payload: Payload
    dense: list[float] | None = None  # None: a lead profile (no vectors)
    keywords: str | None = None  # the text its BM25 vector is made from


@dataclass(frozen=True, slots=True)
class SearchSpec:
    dense: list[float]
    keywords: str | None  # None: meaning only; else fused with BM25 keyword matching by RRF
    flt: Filter
    limit: int


class StoreBackend(Protocol):
    def ensure_schema(self, dim: int) -> None:
        """Creates the collections, or checks that the stored vectors have ``dim`` dims."""

    def upsert(self, collection: str, points: list[PointWrite]) -> None: ...

    def set_payload(self, collection: str, payload: Payload, flt: Filter) -> None: ...

    def delete(self, collection: str, flt: Filter) -> None: ...

    def count(self, collection: str, flt: Filter) -> int: ...

    def scroll(
        self,
        collection: str,
        flt: Filter,
        fields: bool | list[str],
        *,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[Payload]:
        """Payloads of the matching points: all of them, or the first ``limit`` (by
        ``created_at`` descending when ``newest_first``)."""

    def search(self, specs: list[SearchSpec]) -> list[list[tuple[Payload, float]]]:
        """One ranked list of (payload, score) per spec, in one engine call where it can."""

    def wait_indexed(self) -> None:
        """Returns once what was written is indexed (bulk loads, benchmarks)."""

    def health(self) -> None:
        """Raises when the engine cannot answer."""

    def stored_dim(self) -> int | None:
        """The size of the stored note vectors; None when there is no notes collection yet."""

    def open_reindex(self, dim: int) -> None:
        """Opens the ``REINDEX`` collection for ``dim``-dim vectors: what an interrupted
        reindex left there is kept when it has that size, else it starts empty."""

    def commit_reindex(self) -> None:
        """``REINDEX`` becomes ``NOTES`` in one step readers cannot see half of; the old
        notes are deleted. Safe to repeat after a crash part way (the next open finishes it)."""

    def drop_reindex(self) -> None: ...

    def snapshot(self, path: Path) -> None: ...

    def restore(self, path: Path) -> None: ...

    def close(self) -> None: ...
