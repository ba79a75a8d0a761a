"""How long a batch of a given size takes to run, learned from the batches that ran."""

from __future__ import annotations


class RunTimeModel:
    """Estimates a batch's run time as ``fixed + per_row × rows`` from recent batches.

    Keeps exponentially weighted moments of (rows, seconds) and fits the line through them, so a
    small batch is not charged a big one's per-row cost. Until batch sizes have varied, every batch
    is estimated at the recent average: an estimate that errs high would refuse feasible requests.
    """

    def __init__(self, alpha: float = 0.2) -> None:
        self._alpha = alpha
        self._samples = 0
        self._n = self._t = self._nn = self._nt = 0.0

    def observe(self, rows: int, seconds: float) -> None:
        n = float(rows)
        a = self._alpha if self._samples else 1.0
        self._samples += 1
        self._n += a * (n - self._n)
        self._t += a * (seconds - self._t)
        self._nn += a * (n * n - self._nn)
        self._nt += a * (n * seconds - self._nt)

    def estimate(self, rows: int) -> float:
        """Seconds to run a batch of ``rows``; 0 before any batch has run."""
        if not self._samples:
            return 0.0
        per_row = 0.0
        variance = self._nn - self._n * self._n
        if variance > 1e-6 * max(self._nn, 1.0):
            slope = (self._nt - self._n * self._t) / variance
            # Clamped so that the fixed part stays >= 0 and noise never makes time negative.
            per_row = min(max(slope, 0.0), self._t / self._n)
        fixed = self._t - per_row * self._n
        return fixed + per_row * rows

    def drain(self, rows: int, max_batch_size: int) -> float:
        """Seconds to run ``rows`` queued rows in full batches."""
        full, rest = divmod(rows, max_batch_size)
        return full * self.estimate(max_batch_size) + (self.estimate(rest) if rest else 0.0)
