"""``leadgw notes snapshot|restore`` on a real embedded store."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.cli import main
from retrieval.config import NotesConfig, StoreConfig
from retrieval.notes import NotesService
from retrieval.types import NoteRecord

TENANT = "acme"


def note(note_id: str, text: str) -> NoteRecord:
    return NoteRecord(note_id, "lead-1", "call", text, datetime(2026, 1, 5, tzinfo=UTC), "")


async def open_notes(data_dir: Path) -> NotesService:
    return await NotesService.open(NotesConfig(store=StoreConfig(data_dir=data_dir)))


def cli(*args: str) -> int:
    # The command runs its own event loop, as it does from a shell.
    return main(["notes", *args])


async def test_snapshot_then_restore_into_another_directory(tmp_path: Path, capsys) -> None:
    source, target, snapshot = tmp_path / "a", tmp_path / "b", tmp_path / "notes.snapshot"
    notes = await open_notes(source)
    await notes.index(
        TENANT, [note("n1", "Wants a 401k rollover."), note("n2", "Asked about fees.")]
    )
    await notes.close()

    assert await asyncio.to_thread(cli, "snapshot", str(snapshot), "--data-dir", str(source)) == 0
    assert snapshot.stat().st_size > 0 and "wrote" in capsys.readouterr().out
    assert await asyncio.to_thread(cli, "restore", str(snapshot), "--data-dir", str(target)) == 0

    restored = await open_notes(target)
    try:
        assert await restored.count_notes(TENANT) == 2
    finally:
        await restored.close()


async def test_a_store_in_use_is_refused_with_the_reason(tmp_path: Path, capsys) -> None:
    notes = await open_notes(tmp_path / "d")
    try:
        code = await asyncio.to_thread(
            cli, "snapshot", str(tmp_path / "s"), "--data-dir", str(tmp_path / "d")
        )
    finally:
        await notes.close()
    assert code == 1
    assert "is a gateway using it" in capsys.readouterr().err


def test_restore_of_a_missing_file_is_refused(tmp_path: Path, capsys) -> None:
    assert cli("restore", str(tmp_path / "nope"), "--data-dir", str(tmp_path)) == 2
    assert "is not a file" in capsys.readouterr().err


def test_a_bad_snapshot_changes_nothing(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.snapshot"
    bad.write_bytes(b"not a tar")
    assert cli("restore", str(bad), "--data-dir", str(tmp_path / "d")) == 1
    assert "restore failed" in capsys.readouterr().err


@pytest.mark.parametrize("action", ["snapshot", "restore", "reindex"])
def test_help(action: str) -> None:
    with pytest.raises(SystemExit) as done:
        main(["notes", action, "--help"])
    assert done.value.code == 0


async def test_reindex_with_another_embedder(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After LEADGW_EMBEDDINGS_URL changes, `notes reindex` re-embeds and the store opens."""
    from retrieval.config import EmbedderConfig
    from retrieval.embedder import OnnxEmbedder
    from runtimes.errors import FailedPrecondition
    from tests.fakes.embeddings_server import EmbeddingsServer

    data = tmp_path / "d"
    notes = await open_notes(data)
    await notes.index(
        TENANT, [note("n1", "Wants a 401k rollover."), note("n2", "Asked about the ANN-7731.")]
    )
    await notes.close()

    model = await OnnxEmbedder.open()
    try:
        with EmbeddingsServer(model, dims=128) as endpoint:
            monkeypatch.setenv("LEADGW_EMBEDDINGS_URL", endpoint.url)
            monkeypatch.setenv("LEADGW_EMBEDDINGS_MODEL", "minilm-128")
            config = NotesConfig(
                store=StoreConfig(data_dir=data),
                embedder=EmbedderConfig(url=endpoint.url, model="minilm-128"),
            )
            with pytest.raises(FailedPrecondition, match="leadgw notes reindex"):
                await NotesService.open(config)
            assert await asyncio.to_thread(cli, "reindex", "--data-dir", str(data)) == 0
            assert "reindexed 2 note points" in capsys.readouterr().out
            reindexed = await NotesService.open(config)
            try:
                hits = await reindexed.search(TENANT, "ANN-7731", top_k=1)
                assert [h.note.note_id for h in hits] == ["n2"]
            finally:
                await reindexed.close()
    finally:
        await model.close()


def test_reindex_of_a_store_in_use_is_refused(tmp_path: Path, capsys) -> None:
    async def hold_then_reindex() -> int:
        notes = await open_notes(tmp_path / "d")
        try:
            return await asyncio.to_thread(cli, "reindex", "--data-dir", str(tmp_path / "d"))
        finally:
            await notes.close()

    assert asyncio.run(hold_then_reindex()) == 1
    assert "old notes are kept" in capsys.readouterr().err


def test_snapshot_to_a_folder_is_refused(tmp_path: Path, capsys) -> None:
    # It was an IsADirectoryError traceback, after writing the whole tar beside the folder.
    folder = tmp_path / "backups"
    folder.mkdir()
    assert cli("snapshot", str(folder), "--data-dir", str(tmp_path / "d")) == 2
    assert capsys.readouterr().err.strip() == (
        f"leadgw notes: {folder} is a directory; name the file to write"
    )
    assert not list(tmp_path.glob("*.partial"))


def test_snapshot_that_cannot_be_written_names_the_reason(tmp_path: Path, capsys) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    assert cli("snapshot", str(a_file / "s.tar"), "--data-dir", str(tmp_path / "d")) == 1
    err = capsys.readouterr().err
    assert err.startswith("leadgw notes: snapshot failed: ") and str(a_file) in err
