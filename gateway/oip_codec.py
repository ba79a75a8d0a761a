"""Open Inference Protocol tensors ↔ numpy, with the checks a malformed request deserves."""

from __future__ import annotations

import functools
import math

import numpy as np

from leadgw_client.pb.inference import grpc_service_pb2 as pb
from runtimes.errors import InvalidInput, shown
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


def decode_features(
    request: pb.ModelInferRequest, served: ServedModel, max_rows: int | None = None
) -> np.ndarray:
    """The request's single input as float32 [rows, width]; raw bytes are used without copying.
    More than ``max_rows`` rows are refused, as ScoreLeads refuses more leads.

    Every read of a field makes a Python wrapper of upb's message (0.2-0.6 µs each in a loop,
    more in a live server): each field is read once, and the messages of errors are made only
    for an error."""
    expected = served.config.input_name
    inputs = request.inputs
    if len(inputs) != 1:
        got = [t.name for t in inputs]
        twice = _first_repeated(got)
        if twice is not None:
            # As Triton: a name given twice is refused as such, whatever the model takes.
            raise InvalidInput(f"input {shown(twice)} is given twice; give each input once")
        raise InvalidInput(
            f"model '{served.name}' takes one input '{expected}'; got {shown(got, 200)}"
        )
    tensor = inputs[0]
    name = tensor.name
    if name != expected:
        raise InvalidInput(
            f"tensor {shown(name)}: model '{served.name}' has no such input; it takes '{expected}'"
        )
    datatype = tensor.datatype
    if datatype != FP32:
        kind = "unsupported" if datatype not in KNOWN_DATATYPES else "not accepted"
        raise InvalidInput(
            f"tensor {shown(name)}: datatype {shown(datatype)} is {kind}; "
            f"model '{served.name}' takes FP32"
        )
    shape = tuple(tensor.shape)
    if len(shape) != 2 or shape[1] != served.width or shape[0] < 1:
        raise InvalidInput(
            f"tensor {shown(name)}: shape {list(shape)} does not match the model's "
            f"[-1, {served.width}]"
        )
    if max_rows is not None and shape[0] > max_rows:
        raise InvalidInput(
            f"tensor {shown(name)}: shape {list(shape)} has {shape[0]} rows; the limit is "
            f"{max_rows} a request"
        )
    count = shape[0] * shape[1]
    raws = request.raw_input_contents
    if raws:
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
                f"tensor {shown(name)}: contents ({typed[0]}) must not be set when the request "
                "carries raw_input_contents; send one or the other"
            )
        if len(raws) != 1:
            raise InvalidInput(f"request has {len(raws)} raw_input_contents for 1 input")
        raw = raws[0]
        if len(raw) != count * 4:
            raise InvalidInput(
                f"tensor {shown(name)}: raw contents are {len(raw)} bytes; shape {list(shape)} of "
                f"FP32 needs {count * 4}"
            )
        features = np.frombuffer(raw, _LITTLE_F4).reshape(shape)
    else:
        contents = tensor.contents
        for field in _TYPED_FIELDS:
            if len(getattr(contents, field)):
                raise InvalidInput(
                    f"tensor {shown(name)}: datatype FP32 expects fp32_contents, got {field}"
                )
        values = contents.fp32_contents
        if not len(values) and _SHARED_MEMORY in tensor.parameters:
            raise InvalidInput(
                f"tensor {shown(name)}: shared memory ({_SHARED_MEMORY} "
                f"{shown(tensor.parameters[_SHARED_MEMORY].string_param)}) is not supported; "
                "send the values in raw_input_contents or contents"
            )
        if len(values) != count:
            raise InvalidInput(
                f"tensor {shown(name)}: {len(values)} fp32_contents for shape "
                f"{list(shape)} ({count} values)"
            )
        features = np.asarray(values, dtype=np.float32).reshape(shape)
    _check_finite(features, name, served)
    return features


def _check_finite(features: np.ndarray, name: str, served: ServedModel) -> None:
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
        f"tensor {shown(name)}: row {row}, column {col} ('{served.schema.names[col]}') is "
        f"{features[row, col]}; values must be finite"
    )


def requested_outputs(request: pb.ModelInferRequest, served: ServedModel) -> list[str]:
    available = list(served.config.output_names)
    if not request.outputs:
        return available
    names = []
    for output in request.outputs:
        names.append(output.name)
        if output.parameters:
            _check_output_parameters(output)
    if len(set(names)) != len(names):
        # Answered, the output came back twice; Triton refuses it, naming the output.
        twice = _first_repeated(names)
        raise InvalidInput(
            f"requested output {shown(twice)} is asked for twice; ask for each output once"
        )
    unknown = [n for n in names if n not in available]
    if unknown:
        raise InvalidInput(
            f"requested output {shown(unknown[0])} does not exist; "
            f"model '{served.name}' has {available}"
        )
    return names


def _first_repeated(names: list[str]) -> str | None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return None


def _check_output_parameters(output: pb.ModelInferRequest.InferRequestedOutputTensor) -> None:
    """Refuses what Triton's clients may ask of an output that leadgw does not do, rather than
    answer with something else: class labels (BYTES) in place of the scores, or the answer
    written to a shared memory region the client would then read unchanged."""
    for parameter, instead in _UNSUPPORTED_OUTPUT_PARAMETERS.items():
        if parameter in output.parameters:
            raise InvalidInput(
                f"requested output {shown(output.name)}: parameter '{parameter}' is not "
                f"supported; {instead}"
            )


_SHARED_MEMORY = "shared_memory_region"
_UNSUPPORTED_OUTPUT_PARAMETERS = {
    "classification": "ask for the output itself and rank its values on the client",
    _SHARED_MEMORY: "leave it out to receive the output in the answer",
}


def encode_response(
    request: pb.ModelInferRequest,
    served: ServedModel,
    outputs: dict[str, np.ndarray],
    names: list[str],
) -> pb.ModelInferResponse | bytes:
    """Raw output bytes when the request came raw (as tritonclient sends); typed otherwise.

    A raw answer is returned as its wire bytes, which the method's serializer passes through
    (``gateway.interceptors.request_decoding``): everything in it but the id and the outputs'
    bytes is the same for every answer of a model version with the same outputs and shapes, so
    that part is encoded once (``_answer_head``) and the rest appended as fields. A protobuf
    parser reads fields in any order and appends repeated ones, so the bytes parse to the
    message the typed path would build with raw contents: 17 -> 8 µs a batch-1 answer, encoded,
    in a loop."""
    if request.raw_input_contents:
        return _raw_answer(request.id, served, [outputs[name] for name in names], names)
    response = pb.ModelInferResponse(
        model_name=served.name, model_version=served.version, id=request.id
    )
    for name in names:
        array = np.ascontiguousarray(outputs[name], dtype=_LITTLE_F4)
        tensor = response.outputs.add(name=name, datatype=FP32, shape=array.shape)
        tensor.contents.fp32_contents.extend(array.ravel().tolist())
    return response


_ID_TAG = b"\x1a"  # ModelInferResponse.id: field 3, length-delimited
_RAW_OUTPUT_TAG = b"\x32"  # ModelInferResponse.raw_output_contents: field 6, length-delimited


def _raw_answer(
    request_id: str, served: ServedModel, arrays: list[np.ndarray], names: list[str]
) -> bytes:
    shapes = tuple([(name, array.shape) for name, array in zip(names, arrays, strict=True)])
    parts = [_answer_head(served.name, served.version, shapes)]
    if request_id:
        parts.append(_length_delimited(_ID_TAG, request_id.encode()))
    for array in arrays:
        if array.dtype != _LITTLE_F4:
            array = array.astype(_LITTLE_F4)
        # tobytes() gives C order whatever the array's layout.
        parts.append(_length_delimited(_RAW_OUTPUT_TAG, array.tobytes()))
    return b"".join(parts)


@functools.lru_cache(maxsize=256)
def _answer_head(
    model_name: str, model_version: str, shapes: tuple[tuple[str, tuple[int, ...]], ...]
) -> bytes:
    """A raw answer's model name and version and its outputs' names, datatypes and shapes."""
    head = pb.ModelInferResponse(model_name=model_name, model_version=model_version)
    for name, shape in shapes:
        head.outputs.add(name=name, datatype=FP32, shape=shape)
    return head.SerializeToString()


def _length_delimited(tag: bytes, data: bytes) -> bytes:
    size = len(data)
    if size < 0x80:
        return tag + bytes((size,)) + data
    varint = bytearray()
    while size > 0x7F:
        varint.append(size & 0x7F | 0x80)
        size >>= 7
    varint.append(size)
    return tag + bytes(varint) + data
