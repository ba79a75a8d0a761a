"""One ONNX Runtime session per model version, tuned for a latency-sensitive server."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

from runtimes.model_config import OrtSettings


class OnnxSession:
    """Wraps ``onnxruntime.InferenceSession``. ``run`` is blocking: call it off the event loop."""

    def __init__(self, path: Path, settings: OrtSettings, output_names: tuple[str, ...]) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = settings.intra_op_threads
        options.inter_op_num_threads = settings.inter_op_threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Spinning threads burn a core waiting for work; on a shared 2-core box they steal it
        # from the event loop that feeds them.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        # One intra-op and one inter-op thread: the graph runs on the calling thread alone, so
        # that thread's CPU time is the run's time (the batcher's ``computes_on_caller``).
        self.computes_on_caller: bool = (
            settings.intra_op_threads == 1 and settings.inter_op_threads == 1
        )
        self._session = ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(f"{path}: expected one input tensor, found {len(inputs)}")
        self.input_name: str = inputs[0].name
        width = inputs[0].shape[1] if len(inputs[0].shape) == 2 else None
        if not isinstance(width, int):
            raise ValueError(f"{path}: input must be [batch, features] with a fixed width")
        self.width: int = width
        available = {o.name for o in self._session.get_outputs()}
        missing = [name for name in output_names if name not in available]
        if missing:
            raise ValueError(f"{path}: outputs {missing} not in the graph ({sorted(available)})")
        self.output_names = list(output_names)
        self.metadata: dict[str, str] = dict(self._session.get_modelmeta().custom_metadata_map)
        # The public run() checks again on every call what holds here for good: one input, fed
        # by its name, numpy arrays (no OrtValues of another session), the CPU provider (no
        # WebGPU graph capture, no provider fallback). Its three checks cost 5-9 µs of a batch-1
        # run's ~20; the session's own run, which it then calls, is taken directly when the
        # installed onnxruntime has it where it has had it for years.
        inner_run = getattr(getattr(self._session, "_sess", None), "run", None)
        self._run_graph: Callable[..., list[np.ndarray]] | None = (
            inner_run if callable(inner_run) else None
        )

    def run(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """Runs the graph on a float32 [rows, width] matrix; returns every output by name."""
        feed = {self.input_name: features}
        if self._run_graph is not None:
            results = self._run_graph(self.output_names, feed, None)
        else:
            results = self._session.run(self.output_names, feed)
        return dict(zip(self.output_names, results, strict=True))

    def warm_up(self, rows: int = 8) -> None:
        """The first runs allocate and pick kernels; do it at load, not on a client's request."""
        for n in (1, rows):
            self.run(np.zeros((n, self.width), dtype=np.float32))
