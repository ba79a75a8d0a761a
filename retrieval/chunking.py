"""Splits long notes into overlapping windows that each fit the embedding model.

Policy: a note whose text fits in ``MAX_TOKENS`` (256, special tokens included) is one window.
A longer one becomes windows of at most 254 word-piece tokens that overlap by ``overlap`` tokens,
cut at word boundaries; each window is embedded and stored as its own point pointing at the same
note, so a question about the end of a long note finds it as well as one about its start.
"""

from __future__ import annotations

from dataclasses import dataclass

from retrieval.embedder import MAX_TOKENS, load_tokenizer

# [CLS] and [SEP] take two of the model's 256 positions.
_SPECIAL_TOKENS = 2


@dataclass(frozen=True, slots=True)
class Chunk:
    index: int
    text: str


class Chunker:
    """Token-window chunking with the MiniLM tokenizer (also used when embedding remotely, so the
    stored points of a note do not depend on which embedder is configured)."""

    def __init__(self, *, max_tokens: int = MAX_TOKENS, overlap: int = 32) -> None:
        window = max_tokens - _SPECIAL_TOKENS
        if not 0 <= overlap < window // 2:
            raise ValueError(f"overlap must be in [0, {window // 2}), got {overlap}")
        self._window = window
        self._overlap = overlap
        self._tokenizer = load_tokenizer(max_tokens=None)

    def split(self, text: str) -> list[Chunk]:
        encoding = self._tokenizer.encode(text, add_special_tokens=False)
        n = len(encoding.ids)
        if n <= self._window:
            return [Chunk(0, text)]
        words = encoding.word_ids
        offsets = encoding.offsets
        chunks: list[Chunk] = []
        start = 0
        while True:
            end = min(n, start + self._window)
            # Never cut a word in two: back off to the start of the word the window ends in.
            while end < n and end - 1 > start and words[end] == words[end - 1]:
                end -= 1
            chunks.append(Chunk(len(chunks), text[offsets[start][0] : offsets[end - 1][1]]))
            if end >= n:
                return chunks
            next_start = end - self._overlap
            while next_start > start + 1 and words[next_start] == words[next_start - 1]:
                next_start -= 1
            start = max(next_start, start + 1)
