"""MLServer custom runtime for the lead model: ONNX Runtime behind MLServer's ``MLModel``.

Runs inside benchmarks/.venv-mlserver (MLServer's own environment), never in leadgw's, so it
imports only MLServer, ONNX Runtime and numpy.
"""

from __future__ import annotations

import asyncio

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class OnnxLeadModel(MLModel):
    """Loads the ONNX file named by the model settings' ``parameters.uri`` and runs it."""

    async def load(self) -> bool:
        uri = await get_model_uri(self._settings)
        options = ort.SessionOptions()
        # One intra-op thread, as leadgw's session: the comparison is per request, not per core.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = await asyncio.to_thread(
            ort.InferenceSession, uri, options, providers=["CPUExecutionProvider"]
        )
        self._input = self._session.get_inputs()[0].name
        self._outputs = [o.name for o in self._session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        features = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32, copy=False)
        results = self._session.run(None, {self._input: features})
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            outputs=[
                NumpyCodec.encode_output(name, np.asarray(value))
                for name, value in zip(self._outputs, results, strict=True)
            ],
        )
