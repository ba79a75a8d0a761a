"""``leadgw notes snapshot|restore|reindex``: copy the embedded notes store out, put one back,
or re-embed every stored note with the configured embedder.

The embedded store (Qdrant Edge) has one owner at a time, so these run while no gateway serves
that data directory; the command says so if one does. A Qdrant server has its own snapshots;
``reindex`` works on both.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.cli.settings_file import add_config_argument, load_settings

if TYPE_CHECKING:
    from gateway.settings import Settings

DESCRIPTION = (
    "Write a snapshot of the embedded notes store (every tenant's notes and lead profiles) to a "
    "file, or replace the store with one; or re-embed every stored note with the configured "
    "embedder (reindex, after changing LEADGW_EMBEDDINGS_*). Run it while no gateway uses "
    "--data-dir. A Qdrant server (LEADGW_QDRANT_URL) keeps its own snapshots: use Qdrant's "
    "snapshot API there; reindex works on it too."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="notes_command", required=True, metavar="ACTION")
    snapshot = actions.add_parser("snapshot", help="write the store to FILE")
    snapshot.add_argument("file", type=Path, help="the snapshot file to write (a tar)")
    restore = actions.add_parser("restore", help="replace the store with the snapshot in FILE")
    restore.add_argument("file", type=Path, help="a file written by `leadgw notes snapshot`")
    reindex = actions.add_parser(
        "reindex",
        help="re-embed every stored note with the configured embedder (resumable)",
        description="Re-embeds every stored note from its stored text with the embedder the "
        "settings name, into a new collection that replaces the old one once complete. "
        "Interrupted, the old notes stay as they were; running it again carries on.",
    )
    reindex.add_argument(
        "--batch-size", type=int, default=128, help="texts per embedder call (default: 128)"
    )
    for action in (snapshot, restore, reindex):
        action.add_argument(
            "--data-dir",
            type=Path,
            help="the gateway's data directory (default: its data_dir setting, .leadgw unless set)",
        )
        add_config_argument(action)


def run(args: argparse.Namespace) -> int:
    import asyncio

    overrides = {} if args.data_dir is None else {"data_dir": args.data_dir}
    settings = load_settings("notes", args.config, **overrides)
    if settings is None:
        return 2
    if args.notes_command == "reindex":
        if args.batch_size < 1:
            print("leadgw notes: --batch-size must be at least 1", file=sys.stderr)
            return 2
        return asyncio.run(_reindex(settings, args.batch_size))
    if settings.qdrant_url:
        print(
            "leadgw notes: LEADGW_QDRANT_URL points at a Qdrant server; use its snapshot API",
            file=sys.stderr,
        )
        return 2
    if args.notes_command == "restore" and not args.file.is_file():
        print(f"leadgw notes: {args.file} is not a file", file=sys.stderr)
        return 2
    if args.notes_command == "snapshot" and args.file.is_dir():
        print(f"leadgw notes: {args.file} is a directory; name the file to write", file=sys.stderr)
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
    except OSError as exc:  # the file cannot be written (or read)
        print(f"leadgw notes: {action} failed: {exc}", file=sys.stderr)
        return 1
    finally:
        await notes.close()
    return 0


async def _reindex(settings: Settings, batch_size: int) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from gateway.notes_config import notes_config
    from retrieval.embedder import open_embedder
    from retrieval.reindex import reindex
    from runtimes.errors import LeadgwError

    config = notes_config(settings)
    where = settings.qdrant_url or settings.data_dir
    try:
        embedder = await open_embedder(config.embedder)
    except LeadgwError as exc:
        print(f"leadgw notes: cannot open the embedder: {exc.message}", file=sys.stderr)
        return 1
    err = Console(stderr=True)
    columns = (TextColumn("reindexing"), BarColumn(), MofNCompleteColumn(), TextColumn("points"))
    try:
        with Progress(*columns, console=err, transient=True) as bar:
            task = bar.add_task("points", total=None)

            def advance(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            report = await reindex(config.store, embedder, progress=advance, batch=batch_size)
    except LeadgwError as exc:
        print(
            f"leadgw notes: reindex of {where} stopped, the old notes are kept as they were "
            f"(is a gateway using it? stop it first; running it again carries on): {exc.message}",
            file=sys.stderr,
        )
        return 1
    finally:
        await embedder.close()
    previous = ", ".join(report.previous) or "nothing"
    print(
        f"reindexed {report.points:,} note points of {where} with {embedder.name} "
        f"(were: {previous}; {report.embedded:,} embedded now, "
        f"{report.points - report.embedded:,} kept from an earlier run) in {report.seconds:.1f} s"
    )
    return 0
