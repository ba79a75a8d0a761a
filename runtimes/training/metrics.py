"""Held-out quality measures for a binary scorer, numpy only."""

from __future__ import annotations

import numpy as np


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half)."""
    y = np.asarray(y).astype(bool)
    positives = int(y.sum())
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        raise ValueError("AUC needs both classes")
    ranks = _average_ranks(np.asarray(score, dtype=np.float64))
    return float((ranks[y].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def average_precision(y: np.ndarray, score: np.ndarray) -> float:
    """PR-AUC as average precision: mean precision at the rank of each positive."""
    y = np.asarray(y).astype(bool)
    order = np.argsort(-np.asarray(score, dtype=np.float64), kind="stable")
    hits = y[order]
    if not hits.any():
        raise ValueError("average precision needs a positive")
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].mean())


def expected_calibration_error(y: np.ndarray, probability: np.ndarray, bins: int = 20) -> float:
    """Weighted mean |predicted - observed| over equal-mass bins of predicted probability.

    Equal-mass rather than equal-width bins: with a few percent positives almost every lead sits
    in the lowest tenth of the probability range.
    """
    p = np.asarray(probability, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    groups = np.array_split(order, bins)
    y = np.asarray(y, dtype=np.float64)
    return float(sum(len(g) * abs(p[g].mean() - y[g].mean()) for g in groups if len(g)) / len(p))


def brier(y: np.ndarray, probability: np.ndarray) -> float:
    return float(np.mean((np.asarray(probability) - np.asarray(y)) ** 2))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    _, inverse, counts = np.unique(values[order], return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    average = ends - (counts - 1) / 2.0
    ranks = np.empty(len(values))
    ranks[order] = average[inverse]
    return ranks
