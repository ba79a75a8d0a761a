"""Keyword vectors for hybrid search: BM25 term weights as sparse vectors.

Qdrant Edge's own BM25 model makes them (``qdrant_edge.Bm25``: English tokenizer, stemmer and
stop words). The same vectors go to Qdrant Edge and to a Qdrant server, whose sparse index with
the IDF modifier then scores them as BM25: one definition of "keyword match" for both stores.
"""

from __future__ import annotations

from dataclasses import dataclass

from qdrant_edge import Bm25


@dataclass(frozen=True, slots=True)
class Sparse:
    indices: list[int]
    values: list[float]


class Keywords:
    def __init__(self) -> None:
        self._bm25 = Bm25()

    def document(self, text: str) -> Sparse:
        vector = self._bm25.embed_document(text)
        return Sparse(list(vector.indices), list(vector.values))

    def query(self, text: str) -> Sparse:
        vector = self._bm25.embed_query(text)
        return Sparse(list(vector.indices), list(vector.values))
