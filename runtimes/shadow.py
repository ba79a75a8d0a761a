"""Shadow scoring: a candidate version scores a copy of the live version's traffic off the
request path, and the two are compared. The caller only ever gets the live answer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from opentelemetry import trace
from opentelemetry.trace import Link

from runtimes.served_model import OutputsHook, ServedModel

log = logging.getLogger(__name__)

MAX_PENDING = 64
"""Shadow runs waiting or running at once; past this, copies are dropped (and counted), so a
slow candidate can never build a queue that the live traffic pays for."""


@dataclass(frozen=True, slots=True)
class ShadowComparison:
    """One request scored by both versions."""

    model: str
    live_version: str
    candidate_version: str
    differences: np.ndarray
    """candidate − live probability, per lead."""
    band_agreements: int
    """Leads the two versions put in the same band."""
    rank_correlation: float | None
    """Spearman's rank correlation of the two probability columns (None under two leads, or
    when either column is constant)."""
    dropped: bool = False
    """The copy was not scored: too many shadow runs pending, or the candidate failed."""


class ShadowScorer:
    """Makes the hooks the repository sets on a live version while a candidate shadows it."""

    def __init__(self, record: Callable[[ShadowComparison], None]) -> None:
        self._record = record
        self._pending: set[asyncio.Task[None]] = set()
        self._tracer = trace.get_tracer("leadgw.shadow")

    def hook(self, live: ServedModel, candidate: ServedModel) -> OutputsHook:
        def after_live_call(
            served: ServedModel, features: np.ndarray, outputs: dict[str, np.ndarray]
        ) -> None:
            if len(self._pending) >= MAX_PENDING:
                self._record(_dropped(live, candidate))
                return
            link = trace.get_current_span().get_span_context()
            task = asyncio.get_running_loop().create_task(
                self._compare(live, candidate, features, outputs, link)
            )
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

        return after_live_call

    async def _compare(
        self,
        live: ServedModel,
        candidate: ServedModel,
        features: np.ndarray,
        live_outputs: dict[str, np.ndarray],
        link: trace.SpanContext,
    ) -> None:
        links = [Link(link)] if link.is_valid else []
        with self._tracer.start_as_current_span("shadow score", links=links) as span:
            try:
                outputs = await candidate.infer(features)
            except Exception as exc:  # the candidate's failure must stay off the live path
                log.warning(
                    "shadow version %s of %s failed: %s", candidate.version, candidate.name, exc
                )
                self._record(_dropped(live, candidate))
                return
            comparison = compare(live, live_outputs, candidate, outputs)
            span.set_attribute("leadgw.model", live.name)
            span.set_attribute("leadgw.live_version", live.version)
            span.set_attribute("leadgw.shadow_version", candidate.version)
            span.set_attribute("leadgw.leads", int(comparison.differences.size))
            span.set_attribute("leadgw.shadow.band_agreements", comparison.band_agreements)
            span.set_attribute(
                "leadgw.shadow.max_abs_difference",
                float(np.abs(comparison.differences).max(initial=0.0)),
            )
            if comparison.rank_correlation is not None:
                span.set_attribute("leadgw.shadow.rank_correlation", comparison.rank_correlation)
            self._record(comparison)


def compare(
    live: ServedModel,
    live_outputs: dict[str, np.ndarray],
    candidate: ServedModel,
    outputs: dict[str, np.ndarray],
) -> ShadowComparison:
    """Probability differences, band agreement and rank correlation of one request."""
    p_live = live_outputs[live.config.probability_output].reshape(-1).astype(np.float64)
    p_candidate = outputs[candidate.config.probability_output].reshape(-1).astype(np.float64)
    agreements = int(np.count_nonzero(_bands(p_live, live) == _bands(p_candidate, candidate)))
    return ShadowComparison(
        model=live.name,
        live_version=live.version,
        candidate_version=candidate.version,
        differences=p_candidate - p_live,
        band_agreements=agreements,
        rank_correlation=rank_correlation(p_live, p_candidate),
    )


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman's rho (ties broken by position, which is exact for continuous scores)."""
    if a.size < 2:
        return None
    ranks_a = np.argsort(np.argsort(a, kind="stable"), kind="stable").astype(np.float64)
    ranks_b = np.argsort(np.argsort(b, kind="stable"), kind="stable").astype(np.float64)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(np.corrcoef(ranks_a, ranks_b)[0, 1])


def _bands(probability: np.ndarray, served: ServedModel) -> np.ndarray:
    bands = served.config.bands
    return np.where(probability >= bands.hot, 0, np.where(probability >= bands.warm, 1, 2))


def _dropped(live: ServedModel, candidate: ServedModel) -> ShadowComparison:
    return ShadowComparison(
        live.name, live.version, candidate.version, np.empty(0), 0, None, dropped=True
    )
