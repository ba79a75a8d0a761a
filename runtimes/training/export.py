"""Writes an AdditiveModel as an ONNX graph that computes the per-feature contributions itself.

A piecewise-constant function is its first value plus one jump per threshold passed:
contribution_f(x) = v_f[0] + Σ_k [x ≥ t_fk] · (v_f[k+1] − v_f[k]). With all K thresholds of all
features laid side by side that is two small matrix products:

    features [N, F] ─MatMul(select [F, K])─▶ [N, K] ≥ thresholds [K] ─Cast─▶ steps [N, K]
    steps ─MatMul(jumps [K, F]) + first values [F]─▶ contributions [N, F]
    ReduceSum(axis 1) + base ─▶ logit [N, 1] ─Sigmoid─▶ probability [N, 1]

``select`` is one-hot, so the first product copies each feature value exactly to its thresholds.
On ONNX Runtime this is several times faster than comparing against a padded [F, M] threshold
matrix (whose ReduceSum and Cast over [N, F, M] dominate) or gathering columns on axis 1.
Inputs must be finite: the gateway's schema guarantees it (0 · inf would spill across columns).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from runtimes.training.additive import AdditiveModel

OPSET = 17
IR_VERSION = 8  # loadable by onnxruntime >= 1.20


def step_matrices(model: AdditiveModel) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(select [F, K], thresholds [K], jumps [K, F], first values [F]), all float32."""
    width = model.width
    owners = np.concatenate(
        [np.full(len(t), f, dtype=np.int64) for f, t in enumerate(model.thresholds)]
    )
    if owners.size == 0:
        raise ValueError("the model has no thresholds: every feature is constant")
    k = np.arange(owners.size)
    select = np.zeros((width, owners.size), dtype=np.float32)
    select[owners, k] = 1.0
    jumps = np.zeros((owners.size, width), dtype=np.float32)
    jumps[k, owners] = np.concatenate([np.diff(v) for v in model.tables])
    thresholds = np.concatenate(model.thresholds).astype(np.float32)
    first = np.array([v[0] for v in model.tables], dtype=np.float32)
    return select, thresholds, jumps, first


def to_onnx(model: AdditiveModel, version: str) -> onnx.ModelProto:
    """The graph, with base_value, feature_names and leadgw_model_version as metadata."""
    select, thresholds, jumps, first = step_matrices(model)
    width = model.width
    base = np.float32(model.base_value)
    initializers = [
        numpy_helper.from_array(select, "select"),
        numpy_helper.from_array(thresholds, "thresholds"),
        numpy_helper.from_array(jumps, "jumps"),
        numpy_helper.from_array(first, "first_values"),
        numpy_helper.from_array(np.array([[base]], dtype=np.float32), "base_value"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "feature_axis"),
    ]
    nodes = [
        helper.make_node("MatMul", ["features", "select"], ["per_threshold"]),
        helper.make_node("GreaterOrEqual", ["per_threshold", "thresholds"], ["passed"]),
        helper.make_node("Cast", ["passed"], ["steps"], to=TensorProto.FLOAT),
        helper.make_node("MatMul", ["steps", "jumps"], ["jump_sums"]),
        helper.make_node("Add", ["jump_sums", "first_values"], ["contributions"]),
        helper.make_node("ReduceSum", ["contributions", "feature_axis"], ["total"], keepdims=1),
        helper.make_node("Add", ["total", "base_value"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["probability"]),
    ]
    graph = helper.make_graph(
        nodes,
        "lead_scorer",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", width])],
        [
            helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["batch", 1]),
            helper.make_tensor_value_info("logit", TensorProto.FLOAT, ["batch", 1]),
            helper.make_tensor_value_info("contributions", TensorProto.FLOAT, ["batch", width]),
        ],
        initializers,
    )
    proto = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="leadgw train",
        doc_string="Additive lead model: logit = base_value + sum(contributions), exactly.",
    )
    proto.ir_version = IR_VERSION
    helper.set_model_props(
        proto,
        {
            "base_value": repr(float(base)),
            "feature_names": ",".join(model.names),
            "leadgw_model_version": version,
        },
    )
    onnx.checker.check_model(proto, full_check=True)
    return proto


def save(model: AdditiveModel, path: Path, version: str) -> None:
    """Writes ``path`` (model.onnx), creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(to_onnx(model, version), str(path))
