"""``leadgw index FILE``: send notes from JSON Lines or CSV to a running gateway's IndexNotes.

Each row has ``note_id, lead_id, kind, text, created_at`` (ISO-8601; no zone means UTC; empty
means "now" on the gateway) and optionally ``title``. The whole file is parsed before anything
is sent, so a bad row (named by its line) costs nothing. Exit codes: 0 every note indexed,
1 some notes rejected by the gateway, 2 the file could not be read, 3 the gateway failed.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from gateway.cli.connection import add_address_and_key_arguments, add_tls_arguments, open_channel
from leadgw_client.pb.leadgw.v1 import lead_service_pb2 as pb
from leadgw_client.pb.leadgw.v1 import lead_service_pb2_grpc as pb_grpc
from retrieval.validation import MAX_BATCH

EXIT_OK, EXIT_REJECTED, EXIT_BAD_FILE, EXIT_GATEWAY = 0, 1, 2, 3
_FIELDS = ("note_id", "lead_id", "kind", "text", "created_at", "title")
_REQUIRED = ("note_id", "kind", "text")
_SHOWN_REJECTIONS = 20


DESCRIPTION = (
    "Send the notes in FILE to a running gateway's IndexNotes (needs scope 'index' when keys are "
    "in use), --batch-size at a time. Exit codes: 0 every note indexed, 1 some rejected, 2 the "
    "file could not be read, 3 the gateway failed."
)


class FileFormatError(Exception):
    """A file that cannot be read, or a row that cannot be parsed (the message names the line)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file", type=Path, help="notes as JSON Lines (.jsonl, .ndjson) or CSV (.csv)"
    )
    add_address_and_key_arguments(parser)
    parser.add_argument(
        "--batch-size", type=int, default=256, help="notes per IndexNotes call (default 256)"
    )
    parser.add_argument(
        "--format",
        choices=("auto", "jsonl", "csv"),
        default="auto",
        help="auto (default: by the file's suffix; another suffix is refused), jsonl or csv",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds per call (default 60), and to connect (at most 10)",
    )
    add_tls_arguments(parser)


def run(args: argparse.Namespace) -> int:
    out, err = Console(), Console(stderr=True)
    if not 1 <= args.batch_size <= MAX_BATCH:
        _error(err, f"--batch-size must be between 1 and {MAX_BATCH}, got {args.batch_size}")
        return EXIT_BAD_FILE
    try:
        notes = read_notes(args.file, args.format)
    except FileFormatError as exc:
        _error(err, str(exc))
        return EXIT_BAD_FILE
    if not notes:
        _error(err, f"{args.file} has no notes; nothing sent", style="yellow")
        return EXIT_OK
    metadata = (("authorization", f"Bearer {args.api_key}"),) if args.api_key else ()
    with open_channel(args) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=min(args.timeout, 10.0))
        except grpc.FutureTimeoutError:
            _error(err, f"cannot reach a gateway at {args.address}")
            return EXIT_GATEWAY
        summary = _send(pb_grpc.LeadServiceStub(channel), notes, args, metadata, err)
    _print_summary(out, summary)
    if summary.failure:
        _error(err, summary.failure)
        return EXIT_GATEWAY
    return EXIT_REJECTED if summary.counts["rejected"] else EXIT_OK


def _error(err: Console, message: str, style: str = "red") -> None:
    # Unwrapped and without markup: paths and reasons are greppable and print as they are.
    err.print(f"leadgw index: {message}", style=style, markup=False, soft_wrap=True)


@dataclass
class Summary:
    sent: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    rejections: list[tuple[str, str]] = field(default_factory=list)
    failure: str = ""


def _send(
    stub: pb_grpc.LeadServiceStub,
    notes: list[pb.Note],
    args: argparse.Namespace,
    metadata: tuple[tuple[str, str], ...],
    err: Console,
) -> Summary:
    summary = Summary()
    columns = (TextColumn("indexing"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task("notes", total=len(notes))
        for start in range(0, len(notes), args.batch_size):
            batch = notes[start : start + args.batch_size]
            try:
                response = stub.IndexNotes(
                    pb.IndexNotesRequest(notes=batch), metadata=metadata, timeout=args.timeout
                )
            except grpc.RpcError as exc:
                code = exc.code().name if exc.code() else "UNKNOWN"
                summary.failure = (
                    f"IndexNotes failed ({code}: {exc.details()}) after {summary.sent} of "
                    f"{len(notes)} notes were sent; re-running is safe (indexing is idempotent)"
                )
                return summary
            summary.sent += len(batch)
            for name in ("added", "updated", "unchanged", "rejected"):
                summary.counts[name] += getattr(response, name)
            summary.rejections += [
                (r.note_id, r.error)
                for r in response.results
                if r.status == pb.NoteResult.STATUS_REJECTED
            ]
            progress.advance(task, len(batch))
    return summary


def _print_summary(out: Console, summary: Summary) -> None:
    table = Table(title=f"{summary.sent} notes sent")
    for name in ("added", "updated", "unchanged", "rejected"):
        table.add_column(name, justify="right")
    table.add_row(*(str(summary.counts[n]) for n in ("added", "updated", "unchanged", "rejected")))
    out.print(table)
    for note_id, reason in summary.rejections[:_SHOWN_REJECTIONS]:
        out.print(
            f"rejected {note_id or '(no id)'}: {reason}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    hidden = len(summary.rejections) - _SHOWN_REJECTIONS
    if hidden > 0:
        out.print(f"... and {hidden} more rejected notes")


# ---- reading ----


def read_notes(path: Path, fmt: str = "auto") -> list[pb.Note]:
    """Every note of the file, or FileFormatError naming the first bad line."""
    if fmt == "auto":
        suffix = path.suffix.lower()
        fmt = "csv" if suffix == ".csv" else "jsonl" if suffix in (".jsonl", ".ndjson") else ""
        if not fmt:
            raise FileFormatError(f"{path}: unknown suffix {suffix!r}; use --format jsonl|csv")
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            rows = _csv_rows(handle, path) if fmt == "csv" else _jsonl_rows(handle, path)
            return [_note_from_row(row, path, line) for line, row in rows]
    except FileNotFoundError:
        raise FileFormatError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise FileFormatError(f"{path}: is a directory") from None
    except UnicodeDecodeError as exc:
        raise FileFormatError(f"{path}: not UTF-8 text ({exc.reason})") from None


def _jsonl_rows(handle: Any, path: Path) -> Iterator[tuple[int, Mapping[str, Any]]]:
    for line, raw in enumerate(handle, start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise FileFormatError(f"{path} line {line}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise FileFormatError(f"{path} line {line}: expected a JSON object")
        yield line, row


def _csv_rows(handle: Any, path: Path) -> Iterator[tuple[int, Mapping[str, Any]]]:
    reader = csv.DictReader(handle)
    header = reader.fieldnames or []
    missing = [name for name in _REQUIRED if name not in header]
    if missing:
        raise FileFormatError(f"{path} line 1: header lacks column(s) {', '.join(missing)}")
    for row in reader:
        if None in row:
            raise FileFormatError(f"{path} line {reader.line_num}: more values than columns")
        yield reader.line_num, row


def _note_from_row(row: Mapping[str, Any], path: Path, line: int) -> pb.Note:
    where = f"{path} line {line}"
    unknown = sorted(set(row) - set(_FIELDS))
    if unknown:
        raise FileFormatError(f"{where}: unknown field(s) {', '.join(unknown)}")
    for name in _REQUIRED:
        if row.get(name) in (None, ""):
            raise FileFormatError(f"{where}: {name} is missing")
    values = {}
    for name in _FIELDS:
        value = row.get(name)
        if value is not None and not isinstance(value, str):
            raise FileFormatError(f"{where}: {name} must be a string, got {type(value).__name__}")
        values[name] = value or ""
    note = pb.Note(
        note_id=values["note_id"],
        lead_id=values["lead_id"],
        kind=values["kind"],
        text=values["text"],
        title=values["title"],
    )
    if values["created_at"]:
        note.created_at.FromDatetime(_parse_time(values["created_at"], where))
    return note


def _parse_time(text: str, where: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise FileFormatError(f"{where}: created_at {text!r} is not ISO-8601") from None
    # A timestamp without a zone is taken as UTC, the zone the gateway stores.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
