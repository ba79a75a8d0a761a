"""The Open Inference Protocol as an outside client sees it: Triton's own ``tritonclient``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from leadgw_client.pb.inference import grpc_service_pb2 as oip

HERE = Path(__file__).resolve().parent
MODEL = HERE.parent.parent / "runtimes" / "bundled_models" / "lead_scorer" / "1" / "model.onnx"


@pytest.fixture(scope="module")
def findings(shared_gateway) -> dict:
    done = subprocess.run(
        [sys.executable, str(HERE / "tritonclient_checks.py"), shared_gateway.address, str(MODEL)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_health_and_metadata(findings: dict) -> None:
    assert findings["live"] and findings["ready"] and findings["model_ready"]
    assert findings["unknown_model_ready"] is False
    assert findings["server_name"] == "leadgw"
    meta = findings["metadata"]
    assert meta["name"] == "lead_scorer"
    assert meta["inputs"][0]["name"] == "features"
    assert meta["inputs"][0]["datatype"] == "FP32"
    assert [o["name"] for o in meta["outputs"]] == ["probability", "logit", "contributions"]


def test_model_config_extension(findings: dict) -> None:
    config = findings["config"]
    width = int(findings["metadata"]["inputs"][0]["shape"][1])
    assert config["name"] == "lead_scorer"
    assert config["platform"] == "onnxruntime_onnx"
    assert int(config["max_batch_size"]) > 0
    assert config["input"][0]["data_type"] == "TYPE_FP32"
    assert [int(d) for d in config["input"][0]["dims"]] == [width]
    assert "dynamic_batching" in config
    assert len(config["parameters"]["feature_names"]["string_value"].split(",")) == width


def test_infer_matches_onnx_runtime_and_reasons_are_exact(findings: dict) -> None:
    infer = findings["infer"]
    width = int(findings["metadata"]["inputs"][0]["shape"][1])
    assert infer["shapes"] == [[64, 1], [64, 1], [64, width]]
    assert infer["max_diff_vs_ort"] < 1e-5
    assert infer["max_reason_error"] < 1e-4
    assert infer["model_version"] == "1"
    assert findings["only_probability_outputs"] == ["probability"]


@pytest.mark.parametrize(
    ("case", "status", "words"),
    [
        ("unknown_model", "StatusCode.NOT_FOUND", "no_such_model"),
        ("unknown_version", "StatusCode.NOT_FOUND", "version '99'"),
        ("wrong_shape", "StatusCode.INVALID_ARGUMENT", "does not match"),
        ("wrong_datatype", "StatusCode.INVALID_ARGUMENT", "FP64"),
        ("nan", "StatusCode.INVALID_ARGUMENT", "row 1, column 0"),
        ("unknown_metadata", "StatusCode.NOT_FOUND", "no_such_model"),
        # Served anyway, these came back as something else than the client asked for.
        ("classification", "StatusCode.INVALID_ARGUMENT", "'classification' is not supported"),
        ("shared_memory_input", "StatusCode.INVALID_ARGUMENT", "'features_region') is not"),
        ("shared_memory_output", "StatusCode.INVALID_ARGUMENT", "'shared_memory_region' is not"),
        # Answered, the output came back twice; Triton refuses it too, naming the output.
        ("duplicate_output", "StatusCode.INVALID_ARGUMENT", "output 'logit' is asked for twice"),
        ("duplicate_input", "StatusCode.INVALID_ARGUMENT", "input 'features' is given twice"),
    ],
)
def test_errors_have_precise_status(findings: dict, case: str, status: str, words: str) -> None:
    got_status, _, message = findings["errors"][case].partition("|")
    assert got_status == status, findings["errors"][case]
    assert words in message


# Triton's methods that leadgw does not serve, and a word of what each message offers instead.
UNSERVED = {
    "ModelStreamInfer": "call ModelInfer",
    "ModelStatistics": "Prometheus metrics",
    "SystemSharedMemoryStatus": "raw_input_contents",
    "SystemSharedMemoryRegister": "raw_input_contents",
    "SystemSharedMemoryUnregister": "raw_input_contents",
    "CudaSharedMemoryStatus": "raw_input_contents",
    "CudaSharedMemoryRegister": "raw_input_contents",
    "CudaSharedMemoryUnregister": "raw_input_contents",
    "TraceSetting": "OTEL_",
    "LogSettings": "log_level",
}


def test_every_triton_method_is_served_or_listed_as_unserved(findings: dict) -> None:
    """A method Triton's client knows is either in leadgw's proto or answered below: a new one
    in tritonclient shows up here rather than as grpc's bare "Method not found!"."""
    served = set(oip.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods_by_name)
    assert set(findings["triton_methods"]) == served | set(UNSERVED)
    assert not served & set(UNSERVED)


@pytest.mark.parametrize(("method", "instead"), sorted(UNSERVED.items()))
def test_an_unserved_method_says_which_and_what_instead(
    findings: dict, method: str, instead: str
) -> None:
    got_status, _, message = findings["unserved"][method].partition("|")
    assert got_status == "StatusCode.UNIMPLEMENTED", findings["unserved"][method]
    assert f"inference.GRPCInferenceService/{method} is not implemented by leadgw" in message
    assert instead in message
