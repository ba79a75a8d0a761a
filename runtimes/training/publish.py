"""Writes a trained model into a Triton-style repository: config, graph, card and metrics."""

from __future__ import annotations

import json
import platform
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import tomli_w

from runtimes.model_config import CONTROL_TABLES
from runtimes.training import card, export
from runtimes.training.train import TrainResult
from runtimes.training.verify import check_onnx

CONFIG_FILE = "config.toml"
MODEL_FILE = "model.onnx"
DESCRIPTION = (
    "Lead conversion scorer: additive model (EBM-style boosted per-feature functions, "
    "Platt-calibrated) trained on synthetic wealth-management CRM prospects; "
    "exact per-feature reasons."
)


@dataclass(frozen=True)
class Published:
    version_dir: Path
    config_path: Path
    files: list[Path]


def next_version(model_dir: Path) -> str:
    """One more than the highest integer version folder, or 1."""
    versions = [int(p.name) for p in model_dir.glob("*") if p.is_dir() and p.name.isdigit()]
    return str(max(versions, default=0) + 1)


def model_config(name: str, bands: dict[str, float], features: list[dict[str, Any]]) -> dict:
    """The ``config.toml`` the gateway's model repository reads."""
    return {
        "name": name,
        "platform": "onnxruntime_onnx",
        "description": DESCRIPTION,
        "input": {"name": "features"},
        "outputs": {
            "probability": "probability",
            "logit": "logit",
            "contributions": "contributions",
        },
        "bands": {"hot": bands["hot"], "warm": bands["warm"]},
        "onnxruntime": {"intra_op_threads": 1, "inter_op_threads": 1},
        "batching": {"max_batch_size": 1024, "max_queue_delay_us": 500, "max_queue_size": 4096},
        "features": features,
    }


def publish(
    result: TrainResult, repository: Path, name: str, version: str, command: str
) -> Published:
    """Writes ``<repository>/<name>/<version>/`` and the config; refuses to overwrite a version.

    The model-level config.toml is written when absent, and never rewritten: it holds the model's
    control tables (``[routing]``, ``[version_policy]``), which the trainer does not write. When
    it exists, its settings (all but those tables) are compared with this version's: when they
    differ (other band thresholds, say), this version gets its own config.toml, so versions
    already served keep theirs.
    """
    model_dir = repository / name
    version_dir = model_dir / version
    if (version_dir / MODEL_FILE).exists():
        raise FileExistsError(f"{version_dir / MODEL_FILE} already exists; pick another version")
    version_dir.mkdir(parents=True, exist_ok=True)

    config = model_config(name, result.bands, result.feature_tables)
    config_path = model_dir / CONFIG_FILE
    if not config_path.exists():
        config_path.write_text(tomli_w.dumps(config))
    elif _settings(config_path) != config:
        config_path = version_dir / CONFIG_FILE
        config_path.write_text(tomli_w.dumps(config))

    model_path = version_dir / MODEL_FILE
    export.save(result.model, model_path, version)
    checks = check_onnx(model_path, result.model, _check_rows(result.test_features))

    metrics = dict(result.metrics)
    metrics.update(
        model=name,
        version=version,
        command=command,
        bands_thresholds=result.bands,
        onnx={
            "bytes": model_path.stat().st_size,
            "opset": export.OPSET,
            "ir_version": export.IR_VERSION,
            "checks": checks,
        },
        software={
            "python": platform.python_version(),
            "numpy": np.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
    )
    metrics_path = version_dir / "metrics.json"
    metrics_path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    card_path = version_dir / "model_card.md"
    card_path.write_text(card.render(metrics, result.feature_tables, config_path.name))
    return Published(version_dir, config_path, [config_path, model_path, metrics_path, card_path])


def _settings(path: Path) -> dict[str, Any]:
    """A model's config.toml without its control tables: what a version loads with."""
    raw = tomllib.loads(path.read_text())
    return {key: value for key, value in raw.items() if key not in CONTROL_TABLES}


def _check_rows(features: np.ndarray, rows: int = 5000) -> np.ndarray:
    return features[:rows]
