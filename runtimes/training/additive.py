"""The additive lead model: logit = base_value + Σ_f table_f[bin_f(x_f)], exactly.

Each feature's function is piecewise constant on bins: bin = number of thresholds <= x. Values and
thresholds are float32, as in the ONNX graph, so numpy and ONNX Runtime pick the same bins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class AdditiveModel:
    """``thresholds[f]`` ascending float32; ``tables[f]`` has one value per bin (len + 1)."""

    names: list[str]
    thresholds: list[np.ndarray]
    tables: list[np.ndarray]
    base_value: float

    @property
    def width(self) -> int:
        return len(self.names)

    def bins(self, features: np.ndarray) -> np.ndarray:
        """int64 [N, F] bin indices of a float32 [N, F] matrix."""
        x = np.asarray(features, dtype=np.float32)
        out = np.empty(x.shape, dtype=np.int64)
        for f, cuts in enumerate(self.thresholds):
            out[:, f] = np.searchsorted(cuts, x[:, f], side="right")
        return out

    def contributions(self, features: np.ndarray) -> np.ndarray:
        bins = self.bins(features)
        out = np.empty(bins.shape, dtype=np.float64)
        for f, table in enumerate(self.tables):
            out[:, f] = table[bins[:, f]]
        return out

    def logit(self, features: np.ndarray) -> np.ndarray:
        return self.base_value + self.contributions(features).sum(axis=1)

    def probability(self, features: np.ndarray) -> np.ndarray:
        return sigmoid(self.logit(features))

    def padded(self) -> tuple[np.ndarray, np.ndarray]:
        """Thresholds [F, M] padded with +inf, and tables [F, M + 1] padded with 0, for export."""
        m = max(1, max(len(t) for t in self.thresholds))
        cuts = np.full((self.width, m), np.inf, dtype=np.float32)
        values = np.zeros((self.width, m + 1), dtype=np.float32)
        for f, (t, v) in enumerate(zip(self.thresholds, self.tables, strict=True)):
            cuts[f, : len(t)] = t
            values[f, : len(v)] = v
        return cuts, values

    def affine(self, scale: float, shift: float) -> AdditiveModel:
        """The model whose logit is scale * logit + shift (Platt scaling folded in)."""
        return AdditiveModel(
            names=list(self.names),
            thresholds=[t.copy() for t in self.thresholds],
            tables=[scale * v for v in self.tables],
            base_value=scale * self.base_value + shift,
        )

    def centred(self, bins: np.ndarray) -> AdditiveModel:
        """Each function shifted to mean 0 over the rows whose ``bins`` are given, into the base.

        Contributions then read as "compared with a typical lead"; logits do not change.
        """
        tables = []
        base = self.base_value
        for f, v in enumerate(self.tables):
            mean = float(v[bins[:, f]].mean())
            tables.append(v - mean)
            base += mean
        return AdditiveModel(list(self.names), [t.copy() for t in self.thresholds], tables, base)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def quantile_cuts(column: np.ndarray, max_bins: int, floor: float | None = None) -> np.ndarray:
    """Ascending float32 cut points: every distinct value if few, else quantiles of the data.

    ``floor`` adds a cut at the smallest valid value, so a sentinel below it (missing) gets a bin
    of its own however many rows share it.
    """
    x = np.asarray(column, dtype=np.float32)
    distinct = np.unique(x)
    if len(distinct) <= max_bins:
        cuts = distinct[1:]
    else:
        levels = np.linspace(0.0, 1.0, max_bins + 1)[1:-1]
        cuts = np.unique(np.quantile(x, levels, method="lower").astype(np.float32))
        cuts = cuts[cuts > distinct[0]]
    if floor is not None and distinct[0] < floor:
        cuts = np.unique(np.append(cuts, np.float32(floor)))
    return cuts.astype(np.float32)
