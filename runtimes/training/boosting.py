"""Cyclic gradient boosting of per-feature piecewise-constant functions (EBM-style), numpy only.

Each round visits every feature in turn and takes one shrunken, L2-regularised Newton step of the
logistic loss on each of its bins. Rounds stop when the validation loss has not improved for
``patience`` rounds; the best round's tables are kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from runtimes.training.additive import AdditiveModel, sigmoid


@dataclass(frozen=True)
class BoostingParams:
    learning_rate: float = 0.1
    l2: float = 20.0
    max_rounds: int = 600
    patience: int = 30


@dataclass(frozen=True)
class BoostingResult:
    model: AdditiveModel
    rounds: int
    best_round: int
    train_loss: float
    valid_loss: float


# Called after every round with (round, train loss, validation loss).
Progress = Callable[[int, float, float], None]


def fit(
    names: list[str],
    thresholds: list[np.ndarray],
    train: tuple[np.ndarray, np.ndarray],
    valid: tuple[np.ndarray, np.ndarray],
    params: BoostingParams,
    progress: Progress | None = None,
) -> BoostingResult:
    """Fits tables on ``train`` = (bins [N, F], labels [N]), early-stopping on ``valid``."""
    bins, y = train
    valid_bins, valid_y = valid
    y = y.astype(np.float64)
    valid_y = valid_y.astype(np.float64)
    rate = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
    base = float(np.log(rate / (1 - rate)))
    sizes = [len(t) + 1 for t in thresholds]
    tables = [np.zeros(size) for size in sizes]
    logit = np.full(len(y), base)
    valid_logit = np.full(len(valid_y), base)

    best = (np.inf, 0, [t.copy() for t in tables])
    train_loss = valid_loss = np.inf
    rounds = 0
    for rounds in range(1, params.max_rounds + 1):
        for f, size in enumerate(sizes):
            column = bins[:, f]
            p = sigmoid(logit)
            gradient = np.bincount(column, weights=p - y, minlength=size)
            hessian = np.bincount(column, weights=p * (1 - p), minlength=size)
            step = -params.learning_rate * gradient / (hessian + params.l2)
            tables[f] += step
            logit += step[column]
            valid_logit += step[valid_bins[:, f]]
        train_loss = log_loss(y, logit)
        valid_loss = log_loss(valid_y, valid_logit)
        if progress is not None:
            progress(rounds, train_loss, valid_loss)
        if valid_loss < best[0] - 1e-7:
            best = (valid_loss, rounds, [t.copy() for t in tables])
        elif rounds - best[1] >= params.patience:
            break
    model = AdditiveModel(list(names), [t.copy() for t in thresholds], best[2], base)
    return BoostingResult(model, rounds, best[1], train_loss, best[0])


def log_loss(y: np.ndarray, logit: np.ndarray) -> float:
    """Mean logistic loss computed from logits, stable for large |logit|."""
    return float(np.mean(np.logaddexp(0.0, logit) - y * logit))
