"""Bad notes are rejected one by one with a precise reason; good ones in the batch are indexed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from notes_helpers import local_config, make_note

from retrieval.chunking import Chunker
from retrieval.embedder import OnnxEmbedder
from retrieval.notes import MAX_BATCH, NotesService
from retrieval.report import IndexStatus
from retrieval.store import NotesStore
from runtimes.errors import InvalidInput, Unavailable
from runtimes.types import LeadInput

T = "acme"
GOOD = make_note("good", "Asked about long-term care insurance.")


@pytest.mark.parametrize(
    ("note", "reason"),
    [
        (replace(GOOD, text=""), "text is empty"),
        (replace(GOOD, text=" \n\t "), "text is empty"),
        (replace(GOOD, text="x" * 20_001), "text has 20001 characters; the limit is 20000"),
        (replace(GOOD, note_id=""), "note_id is empty"),
        (replace(GOOD, note_id="n" * 129), "note_id has 129 characters; the limit is 128"),
        (replace(GOOD, note_id="a b"), "note_id 'a b' has characters outside"),
        (replace(GOOD, note_id="../etc"), "note_id '../etc' has characters outside"),
        (replace(GOOD, lead_id="lead/1"), "lead_id 'lead/1' has characters outside"),
        (replace(GOOD, kind="sms"), "kind 'sms' is unknown; expected one of call, email"),
        (replace(GOOD, lead_id=""), "lead_id is empty; only kind 'document'"),
        (replace(GOOD, created_at=GOOD.created_at.replace(tzinfo=None)), "created_at has no"),
        (replace(GOOD, title="t" * 501), "title has 501 characters; the limit is 500"),
    ],
)
async def test_each_bad_note_is_rejected_with_its_reason(
    notes: NotesService, note, reason: str
) -> None:
    report = await notes.index(T, [note])
    assert [r.status for r in report.results] == [IndexStatus.REJECTED]
    assert reason in report.results[0].error
    assert await notes.count_points(T) == 0


async def test_mixed_batch_indexes_the_good_and_reports_the_bad(notes: NotesService) -> None:
    batch = [
        GOOD,
        replace(GOOD, note_id="empty", text="   "),
        make_note("good-2", "Firm memo on estate planning.", lead_id="", kind="document"),
        replace(GOOD, text="A second note with the same id."),
        replace(GOOD, note_id="weird kind", kind="tweet"),
    ]
    report = await notes.index(T, batch)
    assert [(r.note_id, r.status) for r in report.results] == [
        ("good", IndexStatus.ADDED),
        ("empty", IndexStatus.REJECTED),
        ("good-2", IndexStatus.ADDED),
        ("good", IndexStatus.REJECTED),
        ("weird kind", IndexStatus.REJECTED),
    ]
    assert report.results[3].error == "note_id repeats notes[0] of this batch; send each note once"
    assert (report.added, report.rejected) == (2, 3)
    assert await notes.count_notes(T) == 2
    hits = await notes.search(T, "long-term care", top_k=5)
    assert hits[0].note.text == GOOD.text  # the first of the duplicates, not the rejected one


@pytest.mark.parametrize(
    ("lead", "message"),
    [
        (LeadInput("", {}), r"leads\[1\].lead_id is empty"),
        (LeadInput("lead-2", {"age": float("nan")}), r"leads\[1\].features\['age'\] is nan"),
        (LeadInput("lead-2", {"age": [1, 2]}), r"leads\[1\].features\['age'\] has type list"),
        (LeadInput("lead-1", {}), r"leads\[1\].lead_id 'lead-1' appears twice"),
    ],
)
async def test_a_bad_profile_refuses_the_whole_call(
    notes: NotesService, lead: LeadInput, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        await notes.index(T, [GOOD], [LeadInput("lead-1", {"age": 40.0}), lead])
    assert await notes.count_points(T) == 0
    assert not await notes.lead_exists(T, "lead-1")


@pytest.mark.parametrize("tenant", ["", "a b", "t" * 200])
async def test_bad_tenant(notes: NotesService, tenant: str) -> None:
    with pytest.raises(InvalidInput, match="tenant"):
        await notes.index(tenant, [GOOD])
    with pytest.raises(InvalidInput, match="tenant"):
        await notes.search(tenant, "anything")


async def test_too_many_notes_in_one_call(notes: NotesService) -> None:
    batch = [replace(GOOD, note_id=f"n{i}") for i in range(MAX_BATCH + 1)]
    with pytest.raises(InvalidInput, match=f"{MAX_BATCH + 1} notes in one call; the limit is"):
        await notes.index(T, batch)


class FailingEmbedder:
    """Stands in for an embeddings endpoint that is down."""

    def __init__(self, like: OnnxEmbedder) -> None:
        self.dim, self.name = like.dim, like.name

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        raise Unavailable("embeddings endpoint unreachable")

    async def close(self) -> None:
        return None


async def test_a_failing_embedder_writes_nothing(tmp_path: Path, embedder: OnnxEmbedder) -> None:
    config = local_config(tmp_path / "data")
    store = await NotesStore.open(config.store, dim=embedder.dim, embedder_name=embedder.name)
    chunker = Chunker()
    working = NotesService(store, embedder, chunker)
    broken = NotesService(store, FailingEmbedder(embedder), chunker)
    try:
        await working.index(T, [GOOD])
        with pytest.raises(Unavailable):
            await broken.index(
                T,
                [replace(GOOD, text="Changed text."), make_note("new", "A new note.")],
                [LeadInput("lead-1", {"age": 40.0})],
            )
        assert await working.count_notes(T) == 1
        assert await working.lead_profile(T, "lead-1") is None
        hits = await working.search(T, "care insurance", top_k=5)
        assert [h.note.text for h in hits] == [GOOD.text]
    finally:
        await store.close()
