"""Checks an exported graph on ONNX Runtime against the numpy model it came from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from runtimes.training.additive import AdditiveModel

TOLERANCE = 1e-4


def check_onnx(path: Path, model: AdditiveModel, features: np.ndarray) -> dict[str, float]:
    """Max deviations on ``features``; raises ValueError if any exceeds TOLERANCE.

    Checks that reasons are exact (base_value + Σ contributions == logit), that probability is
    sigmoid(logit), and that the graph agrees with the numpy model.
    """
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    base = float(session.get_modelmeta().custom_metadata_map["base_value"])
    x = np.ascontiguousarray(features, dtype=np.float32)
    probability, logit, contributions = session.run(
        ["probability", "logit", "contributions"], {"features": x}
    )
    logit = logit[:, 0].astype(np.float64)
    deviations = {
        "reasons_sum_vs_logit": float(np.abs(base + contributions.sum(axis=1) - logit).max()),
        "sigmoid_vs_probability": float(
            np.abs(1.0 / (1.0 + np.exp(-logit)) - probability[:, 0]).max()
        ),
        "onnx_vs_numpy_logit": float(np.abs(logit - model.logit(x)).max()),
        "onnx_vs_numpy_contributions": float(np.abs(contributions - model.contributions(x)).max()),
    }
    worst = max(deviations, key=deviations.__getitem__)
    if deviations[worst] > TOLERANCE:
        raise ValueError(f"{path}: {worst} deviates by {deviations[worst]:.2e} > {TOLERANCE}")
    return deviations
