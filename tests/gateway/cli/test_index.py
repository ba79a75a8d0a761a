"""``leadgw index FILE`` end to end: the real gateway on 127.0.0.1:0, keys and all."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from gateway.auth import hash_key
from gateway.cli import index as index_command
from gateway.server import start
from gateway.settings import Settings
from leadgw_client.pb.leadgw.v1 import lead_service_pb2 as pb
from leadgw_client.pb.leadgw.v1 import lead_service_pb2_grpc as pb_grpc
from retrieval.notes import NotesService

API_KEY = "test-key"
TENANT = "acme"


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[tuple[str, NotesService]]:
    """The real gateway, in this process so the tests can look into its notes store."""
    keys = tmp_path / "keys.toml"
    keys.write_text(
        f'[[keys]]\ntenant = "{TENANT}"\nscopes = ["index", "summarize"]\n'
        f'sha256 = "{hash_key(API_KEY)}"\n'
    )
    settings = Settings(port=0, data_dir=tmp_path / "data", keys_file=keys, load_demo_corpus=False)
    running = await start(settings)
    assert running.notes is not None
    try:
        yield running.address, running.notes
    finally:
        await running.stop(grace=1, drain=0)


def index_args(file: Path, address: str, **extra: object) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    index_command.add_arguments(parser)
    args = parser.parse_args([str(file), "--address", address, "--api-key", API_KEY])
    for key, value in extra.items():
        setattr(args, key, value)
    return args


async def run_index(args: argparse.Namespace) -> int:
    # The command is blocking; the server under test runs on this loop.
    return await asyncio.to_thread(index_command.run, args)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


ROWS = [
    {
        "note_id": f"n{i}",
        "lead_id": "lead-1",
        "kind": "call",
        "text": f"Call {i}: discussed retirement income and a 401k rollover.",
        "created_at": f"2025-05-{i + 1:02d}T10:00:00+00:00",
    }
    for i in range(5)
]


async def test_jsonl_in_batches_then_unchanged(
    gateway: tuple[str, NotesService], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    address, notes = gateway
    file = write_jsonl(tmp_path / "notes.jsonl", ROWS)
    assert await run_index(index_args(file, address, batch_size=2)) == 0
    assert await notes.count_notes(TENANT) == 5
    recent = await notes.recent_notes(TENANT, "lead-1", 1)
    assert recent[0].note_id == "n4"
    assert recent[0].created_at.isoformat() == "2025-05-05T10:00:00+00:00"
    out = capsys.readouterr().out
    assert "5 notes sent" in out

    assert await run_index(index_args(file, address, batch_size=2)) == 0
    assert "5 notes sent" in capsys.readouterr().out
    assert await notes.count_points(TENANT) == 5


async def test_csv_with_rejections_reports_each_and_exits_1(
    gateway: tuple[str, NotesService], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    address, notes = gateway
    file = tmp_path / "notes.csv"
    file.write_text(
        "note_id,lead_id,kind,text,created_at,title\n"
        'c1,lead-2,email,"Asked about 529 plans, for the new baby.",2025-04-01T09:00:00,529\n'
        "c2,lead-2,tweet,Posted about us.,,\n"
        "doc-1,,document,Firm fee schedule.,,Fees\n"
    )
    assert await run_index(index_args(file, address)) == 1
    out = capsys.readouterr().out
    assert "rejected c2: kind 'tweet' is unknown" in out
    hits = await notes.search(TENANT, "college savings", top_k=5)
    assert {h.note.note_id for h in hits} == {"c1", "doc-1"}
    c1 = next(h.note for h in hits if h.note.note_id == "c1")
    assert c1.title == "529"
    assert c1.created_at.isoformat() == "2025-04-01T09:00:00+00:00"  # no zone: taken as UTC


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        (
            '{"note_id": "a", "kind": "call", "text": "ok"}\n{not json\n',
            ".jsonl",
            "line 2: not valid JSON",
        ),
        ('{"note_id": "a", "kind": "call"}\n', ".jsonl", "line 1: text is missing"),
        (
            '{"note_id": "a", "kind": "call", "text": "t", "created_at": "May 5th"}\n',
            ".jsonl",
            "line 1: created_at 'May 5th' is not ISO-8601",
        ),
        ("note_id,kind\na,call\n", ".csv", "line 1: header lacks column(s) text"),
        ("note_id,kind,text\na,call,t\nb,call,t,extra\n", ".csv", "line 3: more values"),
        ("x", ".txt", "unknown suffix '.txt'"),
    ],
)
async def test_unparseable_file_names_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, suffix: str, message: str
) -> None:
    file = tmp_path / f"notes{suffix}"
    file.write_text(content)
    # Nothing listens on this address: the file is refused before any connection is tried.
    assert index_command.run(index_args(file, "127.0.0.1:9")) == 2
    assert message in capsys.readouterr().err.replace("\n", "")


async def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert index_command.run(index_args(tmp_path / "nope.jsonl", "127.0.0.1:9")) == 2
    assert "no such file" in capsys.readouterr().err


async def test_unreachable_gateway(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = write_jsonl(tmp_path / "notes.jsonl", ROWS[:1])
    assert await run_index(index_args(file, "127.0.0.1:9", timeout=1.0)) == 3
    assert "cannot reach a gateway at 127.0.0.1:9" in capsys.readouterr().err


async def test_refused_key_is_reported(
    gateway: tuple[str, NotesService], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    address, notes = gateway
    file = write_jsonl(tmp_path / "notes.jsonl", ROWS)
    assert await run_index(index_args(file, address, api_key="wrong")) == 3
    err = capsys.readouterr().err.replace("\n", "")
    assert "UNAUTHENTICATED" in err
    assert "after 0 of 5 notes" in err
    assert await notes.count_notes(TENANT) == 0


async def test_search_and_delete_rpcs(gateway: tuple[str, NotesService]) -> None:
    address, _ = gateway
    metadata = (("authorization", f"Bearer {API_KEY}"),)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.LeadServiceStub(channel)
        note = pb.Note(note_id="s1", lead_id="lead-3", kind="meeting", text="Sold the family home.")
        response = await stub.IndexNotes(pb.IndexNotesRequest(notes=[note]), metadata=metadata)
        assert response.added == 1
        assert response.results[0].status == pb.NoteResult.STATUS_ADDED

        found = await stub.SearchNotes(
            pb.SearchNotesRequest(query="house sale", lead_id="lead-3"), metadata=metadata
        )
        assert [h.note_id for h in found.hits] == ["s1"]
        assert found.hits[0].created_at.seconds > 0  # unset created_at became "now"

        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.SearchNotes(pb.SearchNotesRequest(query="x", top_k=99), metadata=metadata)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details() == "top_k must be between 1 and 50, got 99"

        deleted = await stub.DeleteNotes(pb.DeleteNotesRequest(lead_id="lead-3"), metadata=metadata)
        assert deleted.deleted == 1
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.DeleteNotes(pb.DeleteNotesRequest(lead_id="lead-3"), metadata=metadata)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
