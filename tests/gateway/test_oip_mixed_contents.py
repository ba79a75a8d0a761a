"""ModelInfer with both typed contents and raw_input_contents is refused, as Triton refuses it,
instead of silently using the raw bytes."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from leadgw_client.pb.inference import grpc_service_pb2 as oip
from leadgw_client.pb.inference import grpc_service_pb2_grpc as oip_grpc


def test_typed_and_raw_contents_together_are_invalid_argument(
    oip_stub: oip_grpc.GRPCInferenceServiceStub,
) -> None:
    config = oip_stub.ModelMetadata(oip.ModelMetadataRequest(name="lead_scorer"), timeout=10)
    tensor = config.inputs[0]
    width = int(tensor.shape[1])
    request = oip.ModelInferRequest(model_name="lead_scorer")
    sent = request.inputs.add(name=tensor.name, datatype="FP32", shape=[1, width])
    sent.contents.fp32_contents.extend([0.0] * width)
    request.raw_input_contents.append(np.zeros(width, dtype="<f4").tobytes())
    with pytest.raises(grpc.RpcError) as caught:
        oip_stub.ModelInfer(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = caught.value.details()
    assert f"'{tensor.name}'" in details and "raw_input_contents" in details
