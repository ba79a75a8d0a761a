"""Drives a running gateway with ``tritonclient.grpc``; prints one JSON object of findings.

Run in its own process: tritonclient registers Triton's ``inference`` protos in the default
descriptor pool, which clash with leadgw's generated ones in the test process.
Usage: python tritonclient_checks.py HOST:PORT MODEL_ONNX_PATH
"""

from __future__ import annotations

import json
import sys

import numpy as np
import onnxruntime as ort
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException


def status_of(call) -> str:
    try:
        call()
    except InferenceServerException as exc:
        return f"{exc.status()}|{exc.message()}"
    return "OK"


def main(address: str, model_path: str) -> dict:
    client = triton.InferenceServerClient(url=address)
    found: dict = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready("lead_scorer"),
        "unknown_model_ready": client.is_model_ready("no_such_model"),
        "server_name": client.get_server_metadata(as_json=True)["name"],
    }
    meta = client.get_model_metadata("lead_scorer", as_json=True)
    found["metadata"] = meta
    config = client.get_model_config("lead_scorer", as_json=True)["config"]
    found["config"] = config
    width = int(meta["inputs"][0]["shape"][1])

    rng = np.random.default_rng(7)
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    # A valid encoded matrix: take rows the model itself was built for (zeros are in range for
    # every feature's encoding) plus noise on the numeric scale is not needed for exactness.
    features = np.abs(rng.normal(size=(64, width))).astype(np.float32)
    tensor = triton.InferInput("features", list(features.shape), "FP32")
    tensor.set_data_from_numpy(features)
    result = client.infer(
        "lead_scorer",
        [tensor],
        outputs=[triton.InferRequestedOutput(n) for n in ("probability", "logit", "contributions")],
    )
    probability = result.as_numpy("probability")
    logit = result.as_numpy("logit")
    contributions = result.as_numpy("contributions")
    expected = dict(
        zip(
            ["probability", "logit", "contributions"],
            session.run(["probability", "logit", "contributions"], {"features": features}),
            strict=True,
        )
    )
    base = float(config["parameters"]["base_value"]["string_value"])
    found["infer"] = {
        "shapes": [list(probability.shape), list(logit.shape), list(contributions.shape)],
        "max_diff_vs_ort": max(
            float(np.max(np.abs(result.as_numpy(n) - expected[n]))) for n in expected
        ),
        "max_reason_error": float(np.max(np.abs(base + contributions.sum(axis=1) - logit[:, 0]))),
        "model_version": result.get_response().model_version,
    }
    only_probability = client.infer(
        "lead_scorer", [tensor], outputs=[triton.InferRequestedOutput("probability")]
    )
    found["only_probability_outputs"] = [o.name for o in only_probability.get_response().outputs]

    wrong_width = triton.InferInput("features", [2, width + 1], "FP32")
    wrong_width.set_data_from_numpy(np.zeros((2, width + 1), dtype=np.float32))
    fp64 = triton.InferInput("features", [2, width], "FP64")
    fp64.set_data_from_numpy(np.zeros((2, width), dtype=np.float64))
    nan = features[:2].copy()
    nan[1, 0] = np.nan
    nan_input = triton.InferInput("features", [2, width], "FP32")
    nan_input.set_data_from_numpy(nan)
    shared = triton.InferInput("features", [2, width], "FP32")
    shared.set_shared_memory("features_region", 2 * width * 4)
    found["errors"] = {
        "unknown_model": status_of(lambda: client.infer("no_such_model", [tensor])),
        "unknown_version": status_of(
            lambda: client.infer("lead_scorer", [tensor], model_version="99")
        ),
        "wrong_shape": status_of(lambda: client.infer("lead_scorer", [wrong_width])),
        "wrong_datatype": status_of(lambda: client.infer("lead_scorer", [fp64])),
        "nan": status_of(lambda: client.infer("lead_scorer", [nan_input])),
        "unknown_metadata": status_of(lambda: client.get_model_metadata("no_such_model")),
        "classification": status_of(
            lambda: client.infer(
                "lead_scorer",
                [tensor],
                outputs=[triton.InferRequestedOutput("probability", class_count=2)],
            )
        ),
        "shared_memory_input": status_of(lambda: client.infer("lead_scorer", [shared])),
        "shared_memory_output": status_of(
            lambda: client.infer("lead_scorer", [tensor], outputs=[_shm_output()])
        ),
        "duplicate_output": status_of(
            lambda: client.infer(
                "lead_scorer",
                [tensor],
                outputs=[triton.InferRequestedOutput(n) for n in ("logit", "probability", "logit")],
            )
        ),
        "duplicate_input": status_of(lambda: client.infer("lead_scorer", [tensor, tensor])),
    }
    found["triton_methods"] = sorted(
        triton.service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods_by_name
    )
    found["unserved"] = unserved(client, tensor)
    client.close()
    return found


def unserved(client: triton.InferenceServerClient, tensor: triton.InferInput) -> dict:
    """Each of Triton's methods that leadgw does not serve, called as tritonclient calls it."""
    found = {
        "ModelStatistics": status_of(lambda: client.get_inference_statistics("lead_scorer")),
        "SystemSharedMemoryStatus": status_of(client.get_system_shared_memory_status),
        "SystemSharedMemoryRegister": status_of(
            lambda: client.register_system_shared_memory("region", "/leadgw_test", 64)
        ),
        "SystemSharedMemoryUnregister": status_of(client.unregister_system_shared_memory),
        "CudaSharedMemoryStatus": status_of(client.get_cuda_shared_memory_status),
        "CudaSharedMemoryRegister": status_of(
            lambda: client.register_cuda_shared_memory("region", b"", 0, 64)
        ),
        "CudaSharedMemoryUnregister": status_of(client.unregister_cuda_shared_memory),
        "TraceSetting": status_of(client.get_trace_settings),
        "LogSettings": status_of(client.get_log_settings),
    }
    # A stream's error reaches the callback; stop_stream waits for the stream to end. The
    # refusal may come before the request is sent, which then raises that the stream ended.
    errors: list = []
    client.start_stream(callback=lambda result, error: errors.append(error))
    status_of(lambda: client.async_stream_infer("lead_scorer", [tensor]))
    client.stop_stream()
    error = errors[0] if errors else None
    found["ModelStreamInfer"] = "OK" if error is None else f"{error.status()}|{error.message()}"
    return found


def _shm_output() -> triton.InferRequestedOutput:
    output = triton.InferRequestedOutput("probability")
    output.set_shared_memory("probability_region", 64 * 4)
    return output


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
