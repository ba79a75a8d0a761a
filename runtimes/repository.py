"""The model repository: Triton's layout, every version loaded, the latest served by default.

<root>/<model>/config.toml            per-model config (schema, bands, batching, ORT)
<root>/<model>/<version>/model.onnx   one folder per integer version
<root>/<model>/<version>/config.toml  optional: replaces the model's config for this version
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from opentelemetry import trace

from runtimes.errors import NotFound
from runtimes.model_config import ModelConfig, find_config, load_config
from runtimes.schema import FeatureSchema
from runtimes.session import OnnxSession
from runtimes.tracing import record_batch_stats, record_queue_wait_span

log = logging.getLogger(__name__)
# The batcher's tracer: the queue-wait span belongs with the batch spans.
_TRACER = trace.get_tracer("leadgw.batcher")

MODEL_FILE = "model.onnx"


@dataclass(frozen=True, slots=True)
class ModelStatus:
    name: str
    version: str
    state: str  # READY | FAILED
    path: str
    reason: str = ""


class ServedModel:
    """One loaded model version: its config, feature schema, session and batcher."""

    def __init__(
        self, name: str, version: str, path: Path, config: ModelConfig, session: OnnxSession
    ) -> None:
        self.name = name
        self.version = version
        self.path = path
        self.config = config
        self.session = session
        self.schema = FeatureSchema.from_config(config.raw)
        if self.schema.width != session.width:
            raise ValueError(
                f"{path}: schema has {self.schema.width} features, graph input has {session.width}"
            )
        self.base_value = float(session.metadata.get("base_value", "0"))
        self._batcher: Any = None

    @property
    def width(self) -> int:
        return self.session.width

    def attach_batcher(self, make_batcher: Callable[[ServedModel], Any]) -> None:
        self._batcher = make_batcher(self)

    async def infer(
        self, features: np.ndarray, deadline: float | None = None
    ) -> dict[str, np.ndarray]:
        """Runs the model on float32 [rows, width]; batched with concurrent callers when enabled."""
        if self._batcher is not None:
            result = await self._batcher.submit_with_stats(features, deadline=deadline)
            span = trace.get_current_span()
            if span.is_recording():
                record_batch_stats(
                    span,
                    queue_wait_s=result.queue_wait_s,
                    batch_size=result.batch_size,
                    batch_id=result.batch_id,
                    batch_context=result.batch_span_context,
                )
                if result.queued:
                    record_queue_wait_span(
                        _TRACER,
                        arrived=result.started - result.queue_wait_s,
                        started=result.started,
                        batch_id=result.batch_id,
                    )
            return result.outputs
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.session.run, features)

    async def close(self) -> None:
        if self._batcher is not None:
            await self._batcher.close()


class ModelRepository:
    """Loads every version under ``root`` at start; serves the latest version by default."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._models: dict[str, dict[str, ServedModel]] = {}
        self._latest: dict[str, str] = {}
        self._status: list[ModelStatus] = []

    async def load(self, make_batcher: Callable[[ServedModel], Any] | None = None) -> None:
        """Loads off the event loop (ONNX Runtime reads and optimises the graph synchronously)."""
        loop = asyncio.get_running_loop()
        found = await loop.run_in_executor(None, self._scan)
        for name, version, path in found:
            try:
                served = await loop.run_in_executor(None, self._load_version, name, version, path)
            except Exception as exc:  # one broken version must not take the others down
                log.error("model %s version %s failed to load: %s", name, version, exc)
                self._status.append(ModelStatus(name, version, "FAILED", str(path), str(exc)))
                continue
            if make_batcher is not None:
                served.attach_batcher(make_batcher)
            self._models.setdefault(name, {})[version] = served
            latest = self._latest.get(name)
            if latest is None or int(version) > int(latest):
                self._latest[name] = version
            self._status.append(ModelStatus(name, version, "READY", str(path)))
            log.info("model %s version %s ready", name, version)

    def _scan(self) -> list[tuple[str, str, Path]]:
        if not self.root.is_dir():
            raise FileNotFoundError(f"model repository {self.root} does not exist")
        found = []
        for model_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            versions = [p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
            for version_dir in sorted(versions, key=lambda p: int(p.name)):
                if (version_dir / MODEL_FILE).is_file():
                    found.append((model_dir.name, str(int(version_dir.name)), version_dir))
        return found

    @staticmethod
    def _load_version(name: str, version: str, version_dir: Path) -> ServedModel:
        config = load_config(find_config(version_dir.parent, version_dir))
        session = OnnxSession(version_dir / MODEL_FILE, config.onnxruntime, config.output_names)
        session.warm_up()
        return ServedModel(name, version, version_dir, config, session)

    def get(self, name: str, version: str | None = None) -> ServedModel:
        """The named model at ``version`` (or its latest); NotFound names what is available."""
        versions = self._models.get(name)
        if versions is None:
            known = ", ".join(sorted(self._models)) or "none"
            raise NotFound(f"model '{name}' is not loaded (loaded models: {known})")
        if not version:
            return versions[self._latest[name]]
        served = versions.get(version.lstrip("0") or "0") if version.isdigit() else None
        if served is None:
            known = ", ".join(sorted(versions, key=int))
            raise NotFound(f"model '{name}' has no version '{version}' (loaded: {known})")
        return served

    def versions(self, name: str) -> list[str]:
        return sorted(self._models.get(name, {}), key=int)

    def names(self) -> list[str]:
        return sorted(self._models)

    def status(self) -> list[ModelStatus]:
        return list(self._status)

    @property
    def ready(self) -> bool:
        return bool(self._models)

    async def close(self) -> None:
        for versions in self._models.values():
            for served in versions.values():
                await served.close()
