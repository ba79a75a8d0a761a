"""A raw ModelInfer request's answer is encoded to its wire bytes by ``oip_codec.encode_response``
(a cached head, then the id and the outputs' bytes as fields): those bytes must parse to exactly
the message built field by field, for any outputs, shapes, ids and dtypes, and reach a real
client as that message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from gateway import oip_codec
from leadgw_client.pb.inference import grpc_service_pb2 as oip
from leadgw_client.pb.inference import grpc_service_pb2_grpc as oip_grpc

MODEL_DIR = Path(__file__).resolve().parents[2] / "runtimes" / "bundled_models" / "lead_scorer"
ALL_OUTPUTS = ["probability", "logit", "contributions"]


@pytest.fixture(scope="module")
def served() -> Any:
    from runtimes.repository import ModelRepository

    return ModelRepository._load_version("lead_scorer", "1", MODEL_DIR / "1")


def _raw_request(served: Any, rows: int, request_id: str) -> oip.ModelInferRequest:
    request = oip.ModelInferRequest(model_name=served.name, id=request_id)
    request.inputs.add(name=served.config.input_name, datatype="FP32", shape=[rows, served.width])
    request.raw_input_contents.append(np.zeros((rows, served.width), dtype="<f4").tobytes())
    return request


def _outputs(rows: int, width: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "probability": rng.random((rows, 1), dtype=np.float32),
        "logit": rng.standard_normal((rows, 1)).astype(np.float32),
        "contributions": rng.standard_normal((rows, width)).astype(np.float32),
    }


def _expected(
    served: Any, request_id: str, outputs: dict[str, np.ndarray], names: list[str]
) -> oip.ModelInferResponse:
    """The answer as the message, field by field (as the raw path built it before)."""
    expected = oip.ModelInferResponse(
        model_name=served.name, model_version=served.version, id=request_id
    )
    for name in names:
        array = np.asarray(outputs[name], dtype="<f4")
        expected.outputs.add(name=name, datatype="FP32", shape=list(array.shape))
        expected.raw_output_contents.append(np.ascontiguousarray(array).tobytes())
    return expected


@pytest.mark.parametrize("rows", [1, 3, 300])  # 300 rows: contributions of 19,200 bytes
@pytest.mark.parametrize("request_id", ["", "lead-7", "x" * 200])  # 200: a two-byte length
@pytest.mark.parametrize(
    "names", [ALL_OUTPUTS, ["contributions"], ["logit", "probability"]], ids=["all", "one", "two"]
)
def test_a_raw_answer_parses_to_the_message_built_field_by_field(
    served: Any, rows: int, request_id: str, names: list[str]
) -> None:
    outputs = _outputs(rows, served.width, rows)
    answer = oip_codec.encode_response(
        _raw_request(served, rows, request_id), served, outputs, names
    )
    assert isinstance(answer, bytes)
    assert oip.ModelInferResponse.FromString(answer) == _expected(
        served, request_id, outputs, names
    )


class ModelLike:
    """The served model with another version: the head cache is keyed by name and version."""

    def __init__(self, served: Any, version: str) -> None:
        self.name = served.name
        self.version = version


def test_the_cached_head_follows_the_shapes_and_the_model_version(served: Any) -> None:
    names = ALL_OUTPUTS
    for rows in (2, 5, 2):
        outputs = _outputs(rows, served.width, rows)
        answer = oip_codec.encode_response(_raw_request(served, rows, ""), served, outputs, names)
        parsed = oip.ModelInferResponse.FromString(answer)
        assert [list(t.shape) for t in parsed.outputs] == [[rows, 1], [rows, 1], [rows, 16]]
    other = ModelLike(served, version="9")
    outputs = _outputs(2, served.width, 2)
    answer = oip_codec.encode_response(_raw_request(served, 2, ""), other, outputs, names)
    assert oip.ModelInferResponse.FromString(answer).model_version == "9"


def test_outputs_of_another_dtype_or_layout_are_sent_as_c_order_float32(served: Any) -> None:
    outputs = _outputs(4, served.width, 1)
    wide = outputs["contributions"].astype(np.float64)
    transposed = np.asfortranarray(outputs["contributions"])
    assert not transposed.flags.c_contiguous
    for contributions in (wide, transposed):
        given = dict(outputs, contributions=contributions)
        answer = oip_codec.encode_response(_raw_request(served, 4, ""), served, given, ALL_OUTPUTS)
        parsed = oip.ModelInferResponse.FromString(answer)
        assert parsed == _expected(served, "", outputs, ALL_OUTPUTS)


def test_a_typed_request_is_still_answered_with_the_message(served: Any) -> None:
    request = _raw_request(served, 2, "typed")
    del request.raw_input_contents[:]
    outputs = _outputs(2, served.width, 3)
    answer = oip_codec.encode_response(request, served, outputs, ["logit"])
    assert isinstance(answer, oip.ModelInferResponse)
    assert list(answer.outputs[0].contents.fp32_contents) == pytest.approx(
        outputs["logit"].ravel().tolist()
    )
    assert not answer.raw_output_contents


def test_a_real_server_answers_raw_and_typed_requests_alike(
    oip_stub: oip_grpc.GRPCInferenceServiceStub, channel: grpc.Channel
) -> None:
    metadata = oip_stub.ModelMetadata(oip.ModelMetadataRequest(name="lead_scorer"), timeout=10)
    width = int(metadata.inputs[0].shape[1])
    rows = np.random.default_rng(5).random((3, width), dtype=np.float32)
    raw = oip.ModelInferRequest(model_name="lead_scorer", id="call-1")
    raw.inputs.add(name=metadata.inputs[0].name, datatype="FP32", shape=[3, width])
    raw.raw_input_contents.append(rows.astype("<f4").tobytes())
    typed = oip.ModelInferRequest(model_name="lead_scorer", id="call-1")
    typed_input = typed.inputs.add(name=metadata.inputs[0].name, datatype="FP32", shape=[3, width])
    typed_input.contents.fp32_contents.extend(rows.ravel().tolist())

    raw_answer = oip_stub.ModelInfer(raw, timeout=10)
    typed_answer = oip_stub.ModelInfer(typed, timeout=10)
    assert (raw_answer.model_name, raw_answer.id) == ("lead_scorer", "call-1")
    assert raw_answer.model_version == typed_answer.model_version != ""
    assert [(t.name, t.datatype, list(t.shape)) for t in raw_answer.outputs] == [
        (t.name, t.datatype, list(t.shape)) for t in typed_answer.outputs
    ]
    for tensor, data in zip(typed_answer.outputs, raw_answer.raw_output_contents, strict=True):
        np.testing.assert_array_equal(
            np.frombuffer(data, dtype="<f4"), np.array(tensor.contents.fp32_contents, "<f4")
        )
    # The bytes on the wire are one message: a client reading them without the generated
    # stub's parser finds the same fields.
    wire = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")(
        raw.SerializeToString(), timeout=10
    )
    assert oip.ModelInferResponse.FromString(wire) == raw_answer
