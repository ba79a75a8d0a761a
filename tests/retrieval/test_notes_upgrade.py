"""A store written by the other form of the local MiniLM (a data dir of an earlier version, or
the setting switched back) is re-embedded as the gateway starts: every note ends up under the
configured embedder's name and vectors, nothing mixed, nothing lost. Anything else stays the
operator's call (the store refuses and names the command)."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from notes_helpers import local_config, make_note

from retrieval.backend import NOTES as NOTES_COLLECTION
from retrieval.backend import SearchSpec
from retrieval.config import EmbedderConfig, NotesConfig
from retrieval.edge_backend import EdgeBackend
from retrieval.embedder import MINILM_DQ_NAME, MINILM_NAME, OnnxEmbedder
from retrieval.filters import Match, tenant_filter, unscoped_filter
from retrieval.notes import NotesService
from retrieval.reindex import upgrade_at_start
from runtimes.errors import FailedPrecondition
from runtimes.types import LeadInput

T = "acme"
LONG = "We went through the estate plan, the trust and the beneficiaries in detail. " * 30
NOTES = [
    make_note("n1", "Wants to roll over a 401k into an IRA."),
    make_note("n2", "Asked about the ANN-7731 fixed annuity.", lead_id="lead-2"),
    make_note("n3", "Expecting a baby; asked about 529 college savings.", kind="email"),
    make_note("n4", LONG, title="Estate review", lead_id="lead-3"),
]


async def write_with(config: NotesConfig, embedder: OnnxEmbedder) -> int:
    """The store as a gateway running ``embedder`` left it; returns its point count."""
    notes = await NotesService.open(config, embedder=embedder)
    try:
        await notes.index(T, NOTES, [LeadInput("lead-1", {"age": 40.0})])
        return await notes.count_points(T)
    finally:
        await notes.close()


def stored_points(config: NotesConfig, embedder: OnnxEmbedder) -> list[tuple[str, float]]:
    """(embedder name, cosine of the stored vector to ``embedder``'s vector of its chunk text)
    for every stored point, read straight from the engine."""
    backend = EdgeBackend(config.store)
    try:
        backend.ensure_schema(embedder.dim)
        payloads = backend.scroll(NOTES_COLLECTION, unscoped_filter(must_not=()), True)
        wanted = embedder.embed_sync([p["chunk_text"] for p in payloads])
        out = []
        for payload, vector in zip(payloads, wanted, strict=True):
            point = tenant_filter(
                payload["tenant"],
                Match("note_id", payload["note_id"]),
                Match("chunk", payload["chunk"]),
            )
            ((_, score),) = backend.search([SearchSpec(vector.tolist(), None, point, 1)])[0]
            out.append((payload["embedder"], score))
        return out
    finally:
        backend.close()


async def check_searchable(config: NotesConfig, embedder: OnnxEmbedder) -> None:
    notes = await NotesService.open(config, embedder=embedder)
    try:
        assert await notes.count_notes(T) == len(NOTES)
        assert (await notes.search(T, "ANN-7731", top_k=1))[0].note.note_id == "n2"
        top = await notes.search(T, "saving for a child's education", top_k=1, mode="dense")
        assert top[0].note.note_id == "n3"
        hits = await notes.search(T, "trust and beneficiaries", top_k=1, lead_id="lead-3")
        assert hits[0].note.text == LONG and hits[0].note.title == "Estate review"
        assert await notes.lead_profile(T, "lead-1") == {"age": 40.0}
    finally:
        await notes.close()


@pytest.mark.parametrize(
    ("old", "new"), [(MINILM_NAME, MINILM_DQ_NAME), (MINILM_DQ_NAME, MINILM_NAME)]
)
async def test_a_store_of_the_other_local_form_is_re_embedded_at_start(
    tmp_path: Path,
    old: str,
    new: str,
    embedder: OnnxEmbedder,
    float_embedder: OnnxEmbedder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    by_name = {MINILM_DQ_NAME: embedder, MINILM_NAME: float_embedder}
    config = replace(local_config(tmp_path), embedder=EmbedderConfig(local=new))
    points = await write_with(config, by_name[old])
    assert points > len(NOTES)  # the long note has several chunks
    # Before: the configured embedder cannot open the store (that is what a start met so far).
    with pytest.raises(FailedPrecondition, match="leadgw notes reindex"):
        await NotesService.open(config, embedder=by_name[new])

    with caplog.at_level(logging.INFO, logger="leadgw.retrieval"):
        report = await upgrade_at_start(config, log_every_s=0.0)

    assert report is not None
    assert (report.points, report.embedded, report.previous) == (points, points, (old,))
    progress = [r.getMessage() for r in caplog.records if "re-embedded" in r.getMessage()]
    assert progress[-1].startswith(f"notes store: re-embedded {points} of {points} note points")
    # Every point is the new embedder's: its name, and its vector (its own text embedded the
    # new way is an exact match; the old vectors would be ~0.99 away).
    stored = stored_points(config, by_name[new])
    assert len(stored) == points
    assert {name for name, _ in stored} == {new}
    assert min(score for _, score in stored) > 0.9999, stored
    await check_searchable(config, by_name[new])
    # A second start has nothing to do.
    assert await upgrade_at_start(config) is None


async def test_with_reindex_at_start_off_the_store_refuses_and_names_the_command(
    tmp_path: Path, embedder: OnnxEmbedder, float_embedder: OnnxEmbedder
) -> None:
    config = replace(local_config(tmp_path), reindex_at_start=False)
    await write_with(config, float_embedder)
    assert await upgrade_at_start(config) is None
    with pytest.raises(FailedPrecondition, match="run `leadgw notes reindex`"):
        await NotesService.open(config, embedder=embedder)
    assert {name for name, _ in stored_points(config, float_embedder)} == {MINILM_NAME}


async def test_a_qdrant_server_is_left_to_the_operator(tmp_path: Path) -> None:
    """Replicas share a server: each would start re-embedding it at once. Nothing listens at
    this address, so trying to would raise (connection refused) instead of returning None."""
    config = local_config(tmp_path)
    server = replace(config, store=replace(config.store, qdrant_url="http://127.0.0.1:9"))
    assert await upgrade_at_start(server) is None


async def test_an_empty_or_current_store_is_left_alone(
    tmp_path: Path, embedder: OnnxEmbedder
) -> None:
    config = local_config(tmp_path)
    assert await upgrade_at_start(config) is None  # nothing stored yet
    await write_with(config, embedder)
    assert await upgrade_at_start(config) is None
    assert {name for name, _ in stored_points(config, embedder)} == {MINILM_DQ_NAME}


async def test_a_store_of_another_embedder_is_not_re_embedded_unasked(
    tmp_path: Path, embedder: OnnxEmbedder
) -> None:
    """Vectors from an embeddings endpoint: re-embedding them is the operator's decision (and
    a store that mixes nothing stays as it is)."""
    config = local_config(tmp_path)
    await write_with(config, embedder)
    backend = EdgeBackend(config.store)
    try:
        backend.ensure_schema(embedder.dim)
        backend.set_payload(
            NOTES_COLLECTION, {"embedder": "openai:some-model"}, unscoped_filter(must_not=())
        )
    finally:
        backend.close()
    assert await upgrade_at_start(config) is None
    with pytest.raises(FailedPrecondition, match="'openai:some-model'"):
        await NotesService.open(config, embedder=embedder)
    stored = np.array([s for _, s in stored_points(config, embedder)])
    assert stored.min() > 0.9999  # untouched
