"""Long notes become overlapping windows that each fit the model; short ones stay whole."""

from __future__ import annotations

import itertools

import pytest

from retrieval.chunking import Chunker
from retrieval.embedder import MAX_TOKENS, load_tokenizer


@pytest.fixture(scope="module")
def chunker() -> Chunker:
    return Chunker()


def test_short_text_is_one_chunk(chunker: Chunker) -> None:
    text = "Asked about 529 plans for the new baby."
    assert [(c.index, c.text) for c in chunker.split(text)] == [(0, text)]


def test_long_text_is_split_into_overlapping_windows_that_fit(chunker: Chunker) -> None:
    words = [f"topic{i} discussed" for i in range(400)]  # about 1,600 word pieces
    text = " ".join(words)
    chunks = chunker.split(text)
    tokenizer = load_tokenizer(None)
    assert len(chunks) >= 5
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        # Each window, with [CLS] and [SEP], fits the model: nothing is truncated away.
        assert len(tokenizer.encode(chunk.text).ids) <= MAX_TOKENS
        # Cut at word boundaries: every window is a run of whole words of the text.
        assert chunk.text in text
        assert chunk.text.split()[0] in text.split()
        assert chunk.text.split()[-1] in text.split()
    assert text.startswith(chunks[0].text)
    assert text.endswith(chunks[-1].text)
    for first, second in itertools.pairwise(chunks):
        # Consecutive windows share their boundary words.
        assert second.text.split()[0] in first.text.split()[-20:]


def test_overlap_must_leave_room(chunker: Chunker) -> None:
    with pytest.raises(ValueError, match="overlap"):
        Chunker(overlap=200)
