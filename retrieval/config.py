"""The narrow configuration the notes store, the embedder and the notes service take.

The gateway builds these from its own settings; nothing in ``retrieval`` reads them elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """Where notes live: an embedded Qdrant Edge shard under ``data_dir``, or a Qdrant server."""

    data_dir: Path
    qdrant_url: str | None = None
    """A Qdrant server. None: the embedded Qdrant Edge shards under ``data_dir / "edge"``."""
    qdrant_api_key: str | None = None
    call_timeout_s: float = 5.0
    """Longest one store call may take (inside any shorter deadline of the caller)."""
    search_threads: int = 1
    """Edge's search pool: one thread leaves the other cores to scoring."""
    host_nice: int = 0
    """The store host process's nice increment (``retrieval.shared_store``, with several
    workers): it serves only notes and summaries, so it may yield the CPU to scoring."""

    @property
    def edge_dir(self) -> Path:
        return self.data_dir / "edge"

    @property
    def local_mode_dir(self) -> Path:
        """Where earlier versions kept notes (qdrant-client local mode); migrated on first start."""
        return self.data_dir / "qdrant"


@dataclass(frozen=True, slots=True)
class EmbedderConfig:
    """The local ONNX MiniLM unless ``url`` names an OpenAI-compatible embeddings endpoint."""

    url: str | None = None
    model: str = "all-MiniLM-L6-v2"
    api_key: str | None = None
    local: str = "all-MiniLM-L6-v2-onnx-int8-dq"
    """Which form of the local MiniLM (``retrieval.embedder.LOCAL_EMBEDDERS``) when ``url`` is
    None: the integer-GEMM one (default) or ``all-MiniLM-L6-v2-onnx-int8``, earlier versions'."""


@dataclass(frozen=True, slots=True)
class NotesConfig:
    store: StoreConfig
    embedder: EmbedderConfig = field(default_factory=EmbedderConfig)
    reindex_at_start: bool = True
    """A store whose notes the other local form embedded is re-embedded as the gateway starts
    (``retrieval.reindex.upgrade``); False: the gateway refuses the notes RPCs and names the
    command instead."""
