"""Small builders shared by the retrieval tests."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil

from retrieval.config import NotesConfig, StoreConfig
from retrieval.types import NoteRecord

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def make_note(
    note_id: str,
    text: str,
    *,
    lead_id: str = "lead-1",
    kind: str = "call",
    days_ago: float = 0.0,
    title: str = "",
) -> NoteRecord:
    return NoteRecord(note_id, lead_id, kind, text, NOW - timedelta(days=days_ago), title)


def local_config(path: Path) -> NotesConfig:
    """The embedded Qdrant Edge store under ``path`` and the local embedder."""
    return NotesConfig(store=StoreConfig(data_dir=path))


ROOT = Path(__file__).resolve().parents[2]


def gone(pid: int) -> bool:
    """Exited and reaped (a zombie would still be a child someone left behind)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def orphan_exits_after_sigkill(script: str, timeout_s: float = 10.0) -> bool:
    """Runs ``script`` (it prints the pid of a store process it started, then waits), SIGKILLs
    it, and says whether that store process exited within ``timeout_s``, as it must: an orphan
    would keep the local-mode folder locked."""
    parent = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert psutil.pid_exists(child)
    finally:
        parent.kill()
        parent.wait(timeout=10)
    deadline = time.monotonic() + timeout_s
    while not gone(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    return gone(child)


def sleep_then(backend: object, seconds: float, value: str) -> str:
    """A store operation (run where the engine lives) that takes ``seconds``, then answers."""
    time.sleep(seconds)
    return value
