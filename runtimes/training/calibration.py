"""Platt scaling: probability = sigmoid(a * logit + b), fitted by Newton's method on held-out rows.

The fitted (a, b) is folded into the additive model's tables and base value, so the exported
graph's sigmoid(logit) is the calibrated probability with no extra step.
"""

from __future__ import annotations

import numpy as np

from runtimes.training.additive import sigmoid


def fit_platt(logit: np.ndarray, y: np.ndarray, iterations: int = 50) -> tuple[float, float]:
    """(a, b) minimising the log loss of sigmoid(a * logit + b) against labels ``y``."""
    x = np.asarray(logit, dtype=np.float64)
    t = np.asarray(y, dtype=np.float64)
    a, b = 1.0, 0.0
    for _ in range(iterations):
        p = sigmoid(a * x + b)
        residual = p - t
        w = p * (1 - p) + 1e-12
        gradient = np.array([residual @ x, residual.sum()])
        hessian = np.array([[w @ (x * x), w @ x], [w @ x, w.sum()]]) + 1e-9 * np.eye(2)
        delta = np.linalg.solve(hessian, gradient)
        a, b = a - float(delta[0]), b - float(delta[1])
        if np.abs(delta).max() < 1e-10:
            break
    return a, b
