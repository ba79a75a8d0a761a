"""The notes store's, embedder's and notes service's narrow configuration, from the settings."""

from __future__ import annotations

from gateway.settings import Settings
from retrieval.config import EmbedderConfig, NotesConfig, StoreConfig


def store_config(settings: Settings) -> StoreConfig:
    return StoreConfig(
        data_dir=settings.data_dir,
        qdrant_url=settings.qdrant_url,
        qdrant_api_key=settings.qdrant_api_key,
        host_nice=settings.genai_nice,
    )


def notes_config(settings: Settings) -> NotesConfig:
    return NotesConfig(
        store=store_config(settings),
        embedder=EmbedderConfig(
            url=settings.embeddings_url,
            model=settings.embeddings_model,
            api_key=settings.embeddings_api_key,
            local=settings.embeddings_local,
        ),
        reindex_at_start=settings.notes_reindex_at_start,
    )
