"""The compute floor: ONNX Runtime called in-process on the same model and batch, no transport."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.targets import Preflight, Sender, Target, TargetError


@dataclass(slots=True)
class _SessionSender:
    session: object
    input_name: str
    matrices: list[np.ndarray]
    _i: int = field(default=0, init=False)

    async def __call__(self) -> None:
        # Synchronous on purpose: this floor is the model's own compute and nothing else.
        self._i = (self._i + 1) % len(self.matrices)
        self.session.run(None, {self.input_name: self.matrices[self._i]})  # type: ignore[attr-defined]

    async def aclose(self) -> None:
        return None


@dataclass
class OnnxFloorTarget(Target):
    """Runs the model with one intra-op thread, as one request at a time would on a server core."""

    name: str
    model_path: Path
    matrices: list[np.ndarray]
    input_name: str = "features"
    intra_op_threads: int = 1
    server_pid: int | None = None
    in_process: bool = True

    @property
    def rows_per_request(self) -> int:  # type: ignore[override]
        return int(self.matrices[0].shape[0])

    def _session(self) -> object:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.intra_op_threads
        options.inter_op_num_threads = 1
        try:
            return ort.InferenceSession(
                str(self.model_path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph types
            raise TargetError(f"{self.name}: cannot load {self.model_path}: {exc}") from None

    async def open(self, channels: int, connect_timeout_s: float) -> Sender:
        session = await asyncio.to_thread(self._session)
        return _SessionSender(session, self.input_name, self.matrices)

    async def preflight(self, timeout_s: float) -> Preflight:
        def run_once() -> list[np.ndarray]:
            session = self._session()
            try:
                return session.run(None, {self.input_name: self.matrices[0]})  # type: ignore[attr-defined]
            except Exception as exc:
                raise TargetError(f"{self.name}: the model refused the batch: {exc}") from None

        outputs = await asyncio.to_thread(run_once)
        response_bytes = sum(int(np.asarray(o).nbytes) for o in outputs)
        shapes = ", ".join(str(list(np.asarray(o).shape)) for o in outputs)
        return Preflight(int(self.matrices[0].nbytes), response_bytes, f"outputs {shapes}")
