"""Open Inference Protocol tensors ↔ numpy, with the checks a malformed request deserves."""

from __future__ import annotations

import math

import numpy as np

from leadgw_client.pb.inference import grpc_service_pb2 as pb
from runtimes.errors import InvalidInput
from runtimes.repository import ServedModel

# The one datatype leadgw's models take and give; any other is refused with a clear message.
FP32 = "FP32"
_LITTLE_F4 = np.dtype("<f4")  # parsed once: a dtype string is parsed again on every call
# Up to this many values, a request's values are checked in plain Python: numpy's isfinite and
# all() cost a batch-1 call ~20 µs with the server's caches cold, a Python sum ~6 (~4 and 1.4
# warm; docs/perf/2026-11-29-cold-calls.md).
_SMALL_CHECK_VALUES = 256
KNOWN_DATATYPES = {
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES", "BF16",
}  # fmt: skip
_TYPED_FIELDS = (
    "bool_contents",
    "int_contents",
    "int64_contents",
    "uint_contents",
    "uint64_contents",
    "fp64_contents",
    "bytes_contents",
)


def decode_features(request: pb.ModelInferRequest, served: ServedModel) -> np.ndarray:
    """The request's single input as float32 [rows, width]; raw bytes are used without copying."""
    expected = served.config.input_name
    if len(request.inputs) != 1:
        got = [t.name for t in request.inputs]
        raise InvalidInput(f"model '{served.name}' takes one input '{expected}'; got {got}")
    tensor = request.inputs[0]
    where = f"tensor '{tensor.name}'"
    if tensor.name != expected:
        raise InvalidInput(
            f"{where}: model '{served.name}' has no such input; it takes '{expected}'"
        )
    if tensor.datatype != FP32:
        kind = "unsupported" if tensor.datatype not in KNOWN_DATATYPES else "not accepted"
        raise InvalidInput(
            f"{where}: datatype '{tensor.datatype}' is {kind}; model '{served.name}' takes FP32"
        )
    shape = tuple(tensor.shape)
    if len(shape) != 2 or shape[1] != served.width or shape[0] < 1:
        raise InvalidInput(
            f"{where}: shape {list(shape)} does not match the model's [-1, {served.width}]"
        )
    count = shape[0] * shape[1]
    if request.raw_input_contents:
        # Unset contents (as every raw request sends them) hold no values: skip reading each of
        # its eight fields, ~5 µs of a batch-1 request.
        typed = (
            [f for f in ("fp32_contents", *_TYPED_FIELDS) if len(getattr(tensor.contents, f))]
            if tensor.HasField("contents")
            else []
        )
        if typed:
            # Triton refuses this too: which of the two should count is anyone's guess.
            raise InvalidInput(
                f"{where}: contents ({typed[0]}) must not be set when the request carries "
                "raw_input_contents; send one or the other"
            )
        if len(request.raw_input_contents) != 1:
            raise InvalidInput(
                f"request has {len(request.raw_input_contents)} raw_input_contents for 1 input"
            )
        raw = request.raw_input_contents[0]
        if len(raw) != count * 4:
            raise InvalidInput(
                f"{where}: raw contents are {len(raw)} bytes; shape {list(shape)} of FP32 "
                f"needs {count * 4}"
            )
        features = np.frombuffer(raw, dtype="<f4").reshape(shape)
    else:
        contents = tensor.contents
        for field in _TYPED_FIELDS:
            if len(getattr(contents, field)):
                raise InvalidInput(f"{where}: datatype FP32 expects fp32_contents, got {field}")
        if len(contents.fp32_contents) != count:
            raise InvalidInput(
                f"{where}: {len(contents.fp32_contents)} fp32_contents for shape "
                f"{list(shape)} ({count} values)"
            )
        features = np.asarray(contents.fp32_contents, dtype=np.float32).reshape(shape)
    _check_finite(features, where, served)
    return features


def _check_finite(features: np.ndarray, where: str, served: ServedModel) -> None:
    if features.size <= _SMALL_CHECK_VALUES:
        # float32 values summed as Python floats (float64) cannot overflow: the sum is finite
        # exactly when every value is (a NaN or an infinity makes it NaN or infinite).
        if math.isfinite(sum(features.ravel().tolist())):
            return
    elif np.isfinite(features).all():
        return
    finite = np.isfinite(features)
    row, col = (int(i) for i in np.argwhere(~finite)[0])
    raise InvalidInput(
        f"{where}: row {row}, column {col} ('{served.schema.names[col]}') is "
        f"{features[row, col]}; values must be finite"
    )


def requested_outputs(request: pb.ModelInferRequest, served: ServedModel) -> list[str]:
    available = list(served.config.output_names)
    if not request.outputs:
        return available
    names = [o.name for o in request.outputs]
    unknown = [n for n in names if n not in available]
    if unknown:
        raise InvalidInput(
            f"requested output {unknown[0]!r} does not exist; model '{served.name}' has {available}"
        )
    return names


def encode_response(
    request: pb.ModelInferRequest,
    served: ServedModel,
    outputs: dict[str, np.ndarray],
    names: list[str],
) -> pb.ModelInferResponse:
    """Raw output bytes when the request came raw (as tritonclient sends); typed otherwise."""
    response = pb.ModelInferResponse(
        model_name=served.name, model_version=served.version, id=request.id
    )
    raw = bool(request.raw_input_contents)
    for name in names:
        array = np.ascontiguousarray(outputs[name], dtype=_LITTLE_F4)
        tensor = response.outputs.add(name=name, datatype=FP32, shape=array.shape)
        if raw:
            response.raw_output_contents.append(array.tobytes())
        else:
            tensor.contents.fp32_contents.extend(array.ravel().tolist())
    return response
