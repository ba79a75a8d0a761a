"""``leadgw notes snapshot|restore``: copy the embedded notes store out, or put one back.

The embedded store (Qdrant Edge) has one owner at a time, so these run while no gateway serves
that data directory; the command says so if one does. A Qdrant server has its own snapshots.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.settings import Settings

DESCRIPTION = (
    "Write a snapshot of the embedded notes store (every tenant's notes and lead profiles) to a "
    "file, or replace the store with one. Run it while no gateway uses --data-dir. A Qdrant "
    "server (LEADGW_QDRANT_URL) keeps its own snapshots: use Qdrant's snapshot API there."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="notes_command", required=True, metavar="ACTION")
    snapshot = actions.add_parser("snapshot", help="write the store to FILE")
    snapshot.add_argument("file", type=Path, help="the snapshot file to write (a tar)")
    restore = actions.add_parser("restore", help="replace the store with the snapshot in FILE")
    restore.add_argument("file", type=Path, help="a file written by `leadgw notes snapshot`")
    for action in (snapshot, restore):
        action.add_argument(
            "--data-dir", type=Path, help="the gateway's data directory (default: its setting)"
        )


def run(args: argparse.Namespace) -> int:
    import asyncio

    from pydantic import ValidationError

    from gateway.settings import Settings

    overrides = {} if args.data_dir is None else {"data_dir": args.data_dir}
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        print(f"leadgw notes: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    if settings.qdrant_url:
        print(
            "leadgw notes: LEADGW_QDRANT_URL points at a Qdrant server; use its snapshot API",
            file=sys.stderr,
        )
        return 2
    if args.notes_command == "restore" and not args.file.is_file():
        print(f"leadgw notes: {args.file} is not a file", file=sys.stderr)
        return 2
    return asyncio.run(_run(settings, args.notes_command, args.file))


async def _run(settings: Settings, action: str, path: Path) -> int:
    from gateway.notes_config import notes_config
    from retrieval.notes import NotesService
    from runtimes.errors import LeadgwError

    try:
        notes = await NotesService.open(notes_config(settings))
    except LeadgwError as exc:
        print(
            f"leadgw notes: cannot open the store in {settings.data_dir} (is a gateway using "
            f"it? stop it first): {exc.message}",
            file=sys.stderr,
        )
        return 1
    try:
        if action == "snapshot":
            await notes.snapshot(path)
            print(f"wrote {path} ({path.stat().st_size:,} bytes) from {settings.data_dir}")
        else:
            await notes.restore(path)
            print(f"restored {settings.data_dir} from {path}")
    except LeadgwError as exc:
        print(f"leadgw notes: {action} failed: {exc.message}", file=sys.stderr)
        return 1
    finally:
        await notes.close()
    return 0
