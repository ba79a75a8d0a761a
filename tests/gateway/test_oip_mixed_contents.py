"""ModelInfer with both typed contents and raw_input_contents is refused, as Triton refuses it,
instead of silently using the raw bytes."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from leadgw_client.pb.inference import grpc_service_pb2 as oip
from leadgw_client.pb.inference import grpc_service_pb2_grpc as oip_grpc


def raw_request(
    oip_stub: oip_grpc.GRPCInferenceServiceStub,
) -> tuple[oip.ModelInferRequest, oip.ModelInferRequest.InferInputTensor, int]:
    config = oip_stub.ModelMetadata(oip.ModelMetadataRequest(name="lead_scorer"), timeout=10)
    tensor = config.inputs[0]
    width = int(tensor.shape[1])
    request = oip.ModelInferRequest(model_name="lead_scorer")
    sent = request.inputs.add(name=tensor.name, datatype="FP32", shape=[1, width])
    request.raw_input_contents.append(np.zeros(width, dtype="<f4").tobytes())
    return request, sent, width


@pytest.mark.parametrize(
    ("field", "value"),
    [("fp32_contents", 0.0), ("int64_contents", 0), ("bytes_contents", b"x")],
)
def test_typed_and_raw_contents_together_are_invalid_argument(
    oip_stub: oip_grpc.GRPCInferenceServiceStub, field: str, value: object
) -> None:
    request, sent, width = raw_request(oip_stub)
    getattr(sent.contents, field).extend([value] * width)
    with pytest.raises(grpc.RpcError) as caught:
        oip_stub.ModelInfer(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = caught.value.details()
    assert f"'{sent.name}'" in details and "raw_input_contents" in details
    assert field in details


def test_raw_contents_with_an_empty_contents_message_are_served(
    oip_stub: oip_grpc.GRPCInferenceServiceStub,
) -> None:
    # A contents message that is present but holds no values is no conflict with the raw bytes.
    request, sent, _ = raw_request(oip_stub)
    sent.contents.SetInParent()
    assert sent.HasField("contents")
    response = oip_stub.ModelInfer(request, timeout=10)
    assert [output.name for output in response.outputs][:1] == ["probability"]
    assert len(response.raw_output_contents) == len(response.outputs)
