"""Synthetic leads drawn from a model's feature schema, encoded as ready-to-send request bytes.

Requests are built once, before the load starts, so the generator spends its time sending, not
building protobuf messages.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from leadgw_client.pb.inference import grpc_service_pb2
from leadgw_client.pb.leadgw.v1 import lead_service_pb2
from runtimes.model_config import CONFIG_FILE, load_config
from runtimes.schema import FeatureSchema, FeatureSpec


@dataclass(frozen=True, slots=True)
class Feature:
    """One tensor column: a number in [low, high], a category among `categories`, or a flag."""

    name: str
    kind: str  # "number", "category" or "flag"
    low: float = 0.0
    high: float = 1.0
    categories: tuple[str, ...] = ()


class SchemaError(Exception):
    """The model's config file is missing or does not describe its features."""


def model_dir(repository: Path, model: str) -> Path:
    return repository / model


def latest_model_file(repository: Path, model: str) -> Path:
    """``<repo>/<model>/<highest numeric version>/model.onnx``."""
    versions = [
        p for p in model_dir(repository, model).glob("*/model.onnx") if p.parent.name.isdigit()
    ]
    if not versions:
        raise SchemaError(f"no {model}/<version>/model.onnx under {repository}")
    return max(versions, key=lambda p: int(p.parent.name))


def load_schema(repository: Path, model: str) -> list[Feature]:
    """The features of ``<repo>/<model>/config.toml``, in column order, read by the same parser
    the gateway uses (so the bench can never accept a config the gateway refuses)."""
    path = model_dir(repository, model) / CONFIG_FILE
    try:
        config = load_config(path)
        schema = FeatureSchema.from_config(config.raw)
    except FileNotFoundError:
        raise SchemaError(f"{path} does not exist") from None
    except ValueError as exc:
        raise SchemaError(str(exc)) from None
    return [_feature(spec) for spec in schema.specs]


def _feature(spec: FeatureSpec) -> Feature:
    if spec.kind == "category":
        return Feature(spec.name, "category", 0.0, float(len(spec.categories) - 1), spec.categories)
    if spec.kind == "boolean":
        return Feature(spec.name, "flag")
    # An open range draws from [min, min + 1] (or [0, 1]), as a client without bounds might.
    low = spec.minimum if math.isfinite(spec.minimum) else 0.0
    high = spec.maximum if math.isfinite(spec.maximum) else max(low, 0.0) + 1.0
    return Feature(spec.name, "number", low, high)


def synthetic_schema(features: int) -> list[Feature]:
    """Numeric columns ``f0..fN-1`` for an OIP endpoint whose config is not at hand."""
    return [Feature(f"f{i}", "number") for i in range(features)]


def random_rows(schema: list[Feature], rows: int, rng: random.Random) -> list[list[object]]:
    """Feature values per lead: float, category name or bool, in column order."""
    out: list[list[object]] = []
    for _ in range(rows):
        row: list[object] = []
        for f in schema:
            if f.kind == "category":
                row.append(rng.choice(f.categories))
            elif f.kind == "flag":
                row.append(rng.random() < 0.5)
            else:
                value = rng.uniform(f.low, f.high)
                row.append(round(value) if f.high - f.low >= 10 else value)
        out.append(row)
    return out


def as_matrix(schema: list[Feature], rows: list[list[object]]) -> np.ndarray:
    """FP32 tensor: a category is its index in the schema's list, a flag 0/1."""
    matrix = np.zeros((len(rows), len(schema)), dtype=np.float32)
    for i, row in enumerate(rows):
        for j, (f, value) in enumerate(zip(schema, row, strict=True)):
            matrix[i, j] = (
                f.categories.index(str(value)) if f.kind == "category" else float(value)  # type: ignore[arg-type]
            )
    return matrix


def score_leads_request(
    schema: list[Feature], rows: list[list[object]], model: str, first_id: int = 0
) -> lead_service_pb2.ScoreLeadsRequest:
    request = lead_service_pb2.ScoreLeadsRequest(model_name=model)
    for i, row in enumerate(rows):
        lead = request.leads.add(lead_id=f"lead-{first_id + i}")
        for f, value in zip(schema, row, strict=True):
            fv = lead.features[f.name]
            if f.kind == "category":
                fv.category = str(value)
            elif f.kind == "flag":
                fv.flag = bool(value)
            else:
                fv.number = float(value)  # type: ignore[arg-type]
    return request


def score_columns_request(
    schema: list[Feature], rows: list[list[object]], model: str, first_id: int = 0
) -> lead_service_pb2.ScoreLeadsRequest:
    """The leads of ``score_leads_request``, sent column-wise (``ScoreLeadsRequest.columns``)."""
    request = lead_service_pb2.ScoreLeadsRequest(model_name=model)
    request.columns.lead_ids.extend(f"lead-{first_id + i}" for i in range(len(rows)))
    for j, f in enumerate(schema):
        column = request.columns.features.add(name=f.name)
        values = [row[j] for row in rows]
        if f.kind == "category":
            column.categories.values.extend(str(v) for v in values)
        elif f.kind == "flag":
            column.flags.values.extend(bool(v) for v in values)
        else:
            column.numbers.values.extend(float(v) for v in values)  # type: ignore[arg-type]
    return request


def model_infer_request(
    matrix: np.ndarray, model: str, input_name: str = "features"
) -> grpc_service_pb2.ModelInferRequest:
    """OIP request with the tensor in ``raw_input_contents``, as tritonclient sends it."""
    request = grpc_service_pb2.ModelInferRequest(model_name=model)
    request.inputs.add(name=input_name, datatype="FP32", shape=list(matrix.shape))
    request.raw_input_contents.append(np.ascontiguousarray(matrix, dtype="<f4").tobytes())
    return request
