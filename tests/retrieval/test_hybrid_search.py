"""Hybrid search (meaning and BM25 keywords fused by reciprocal rank) on a small labelled set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from notes_helpers import make_note

from retrieval.notes import NotesService, SearchMode
from runtimes.errors import InvalidInput

T = "acme"
LABELLED = json.loads(
    (Path(__file__).resolve().parents[1] / "data" / "hybrid_labelled.json").read_text()
)
K = 5


async def load(notes: NotesService) -> None:
    await notes.index(T, [make_note(n["id"], n["text"]) for n in LABELLED["notes"]])


async def ranked(notes: NotesService, query: str, mode: SearchMode) -> list[str]:
    return [h.note.note_id for h in await notes.search(T, query, top_k=K, mode=mode)]


async def recall_at_k(notes: NotesService, mode: SearchMode) -> float:
    found = 0
    wanted = 0
    for case in LABELLED["queries"]:
        top = set(await ranked(notes, case["query"], mode))
        found += len(top & set(case["relevant"]))
        wanted += len(case["relevant"])
    return found / wanted


async def test_hybrid_recall_is_at_least_dense_recall(notes: NotesService) -> None:
    await load(notes)
    dense = await recall_at_k(notes, "dense")
    hybrid = await recall_at_k(notes, "hybrid")
    assert hybrid >= dense, (hybrid, dense)
    assert hybrid > dense, "the policy number's note is found only with keywords"


async def test_a_policy_number_only_keywords_find(notes: NotesService) -> None:
    """A long note that mentions the number once, among short notes of look-alike numbers:
    meaning ranks the look-alikes first; the exact token brings the note into the top 5."""
    await load(notes)
    assert "h1" not in await ranked(notes, "QX-58213", "dense")
    assert "h1" in await ranked(notes, "QX-58213", "hybrid")


async def test_a_product_code_ranks_first_with_keywords(notes: NotesService) -> None:
    await load(notes)
    # By meaning alone a1 and the look-alike code of h2 are a coin toss (cosine 0.332 against
    # 0.341 with the float form of the embedder, 0.335 against 0.326 with the integer form):
    # the exact token is what must put a1 first, whichever way meaning leans. (That keywords
    # alone find a note meaning misses is test_a_policy_number_only_keywords_find.)
    dense = await ranked(notes, "ANN-7731", "dense")
    assert set(dense[:2]) == {"a1", "h2"}
    assert (await ranked(notes, "ANN-7731", "hybrid"))[0] == "a1"


async def test_hybrid_still_finds_by_meaning_without_shared_words(notes: NotesService) -> None:
    await load(notes)
    top = await ranked(notes, "saving for a child's education", "hybrid")
    assert {"c1", "c2"} <= set(top[:3])


async def test_an_unknown_mode_is_refused(notes: NotesService) -> None:
    with pytest.raises(InvalidInput, match="search mode 'fuzzy' is unknown"):
        await notes.search(T, "annuity", mode="fuzzy")  # type: ignore[arg-type]
