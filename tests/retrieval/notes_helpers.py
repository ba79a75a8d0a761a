"""Small builders shared by the retrieval tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.settings import Settings
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


def local_settings(path: Path) -> Settings:
    """Embedded Qdrant under ``path`` and the local embedder, whatever the environment says."""
    return Settings(data_dir=path, qdrant_url=None, embeddings_url=None, load_demo_corpus=False)
