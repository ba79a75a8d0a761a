"""Shadow scoring: a candidate version scores a copy of the live version's traffic off the
request path, and the two are compared. The caller only ever gets the live answer.

On the request path a live call only puts its feature matrix and its probabilities (references,
or the sampled rows) into a bounded queue: ``ShadowLane.observe``. A drainer task takes what has
queued, at most every ``DRAIN_INTERVAL_S``, runs the candidate once per chunk of up to
``CHUNK_ROWS`` rows, compares a chunk array-at-a-time, records the metrics in bulk, and emits
one span per chunk linked to the requests in it. A full queue drops the copy and counts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from opentelemetry import trace
from opentelemetry.trace import SpanContext

from runtimes.routing import shadow_share
from runtimes.served_model import LeadKeys, ServedModel

log = logging.getLogger(__name__)

MAX_QUEUED_ROWS = 4096
"""Rows waiting for the drainer; past this, copies are dropped (and counted), so a slow
candidate can never build a queue that the live traffic pays for."""
MAX_QUEUED_COPIES = 1024
"""Copies waiting for the drainer (a bound on the queue's own size for one-lead requests)."""
CHUNK_ROWS = 256
"""Rows per candidate run: big enough that the run's fixed cost is spread thin, small enough
that comparing and recording one chunk holds the event loop for about a millisecond."""
DRAIN_INTERVAL_S = 0.05
"""The drainer starts at most this often: copies pile up meanwhile, so a drain is one fuller
candidate run, not one run per request."""
RECORD_SLICE = 64
"""Leads whose metrics are recorded between two yields to the event loop."""
MAX_LINKS = 128
"""Links per chunk span (OpenTelemetry's default link limit); the span counts all requests."""


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs more on the request path
class ShadowCopy:
    """One live call's rows waiting to be scored by the candidate."""

    features: np.ndarray
    live_probability: np.ndarray
    """The live version's probability per row (float, [rows])."""
    link: SpanContext | None
    """The request's span, when it is recorded (the chunk's span links to it)."""


@dataclass(frozen=True, slots=True)
class ShadowComparison:
    """Requests scored by both versions, compared per request (one or many requests)."""

    model: str
    live_version: str
    candidate_version: str
    differences: np.ndarray
    """candidate − live probability per lead, the requests' leads one after the other."""
    sizes: np.ndarray
    """Leads per request (int, [requests])."""
    band_agreements: np.ndarray
    """Per request: leads the two versions put in the same band (int, [requests])."""
    rank_correlations: np.ndarray
    """Per request: Spearman's rank correlation of the two probability columns; NaN under two
    leads, or when either column is constant (float, [requests])."""

    @property
    def leads(self) -> int:
        return int(self.differences.size)

    @property
    def requests(self) -> int:
        return int(self.sizes.size)

    @property
    def agreements(self) -> int:
        return int(self.band_agreements.sum())


Record = Callable[[ShadowComparison], None]
RecordDropped = Callable[[str, str, str, int], None]
"""(model, live version, candidate version, copies) not scored: queue full or candidate failed."""


class ShadowScorer:
    """Makes the lanes the repository sets on a live version while a candidate shadows it."""

    def __init__(self, record: Record, record_dropped: RecordDropped) -> None:
        self._record = record
        self._record_dropped = record_dropped

    def lane(self, live: ServedModel, candidate: ServedModel, rate: float) -> ShadowLane:
        return ShadowLane(live, candidate, rate, self._record, self._record_dropped)


class ShadowLane:
    """One live version's copies on their way to one candidate: a bounded queue and its
    drainer task (started by the first copy, inside the running loop; stopped by ``close``)."""

    def __init__(
        self,
        live: ServedModel,
        candidate: ServedModel,
        rate: float,
        record: Record,
        record_dropped: RecordDropped,
        *,
        max_rows: int = MAX_QUEUED_ROWS,
        max_copies: int = MAX_QUEUED_COPIES,
        chunk_rows: int = CHUNK_ROWS,
        interval_s: float = DRAIN_INTERVAL_S,
    ) -> None:
        self.live = live
        self.candidate = candidate
        self.rate = rate
        """Share of leads compared, sticky by tenant and lead id; the repository updates it."""
        self._record = record
        self._record_dropped = record_dropped
        self._max_rows = max_rows
        self._max_copies = max_copies
        self._chunk_rows = chunk_rows
        self._interval_s = interval_s
        self._queue: deque[ShadowCopy] = deque()
        self._queued_rows = 0
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._failed = False
        self._tracer = trace.get_tracer("leadgw.shadow")
        self._live_probability = live.config.probability_output
        self._candidate_probability = candidate.config.probability_output

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    # ---- the request path ---------------------------------------------------------------

    def observe(
        self, features: np.ndarray, outputs: dict[str, np.ndarray], keys: LeadKeys | None
    ) -> None:
        """Queues a copy of one live call (its sampled rows), or drops and counts it."""
        if self._closed:
            if self._failed:  # the drainer died (logged): what it would have scored is lost
                self._record_dropped(self.live.name, self.live.version, self.candidate.version, 1)
            return
        probability = outputs[self._live_probability].reshape(-1)
        rows = self._sample(keys, len(probability))
        if rows is not None:
            if not rows.size:
                return
            features, probability = features[rows], probability[rows]
        n = len(probability)
        # One copy larger than the whole queue is let in alone, or it could never be compared.
        if self._queue and (
            self._queued_rows + n > self._max_rows or len(self._queue) >= self._max_copies
        ):
            self._record_dropped(self.live.name, self.live.version, self.candidate.version, 1)
            return
        span = trace.get_current_span()
        link = span.get_span_context() if span.is_recording() else None
        was_empty = not self._queue
        self._queue.append(ShadowCopy(features, probability, link))
        self._queued_rows += n
        if self._task is None:
            self._wake = asyncio.Event()
            # A context of its own: the drainer's spans must not become children of the span
            # of whichever request happened to start it.
            self._task = asyncio.get_running_loop().create_task(
                self._drain(),
                name=f"shadow {self.live.name} v{self.candidate.version}",
                context=contextvars.Context(),
            )
        elif was_empty and self._wake is not None:
            self._wake.set()

    def _sample(self, keys: LeadKeys | None, n: int) -> np.ndarray | None:
        """The rows to compare; None: all of them."""
        rate = self.rate
        if rate >= 1.0:
            return None
        if rate <= 0.0:
            return np.empty(0, dtype=np.intp)
        if keys is None:  # no lead ids (an OIP call without an id): a share of calls
            return None if random.random() < rate else np.empty(0, dtype=np.intp)
        tenant, lead_ids = keys()
        model = self.live.name
        picked = [i for i, lead in enumerate(lead_ids) if shadow_share(model, tenant, lead) < rate]
        return None if len(picked) == n else np.asarray(picked, dtype=np.intp)

    # ---- the drainer ----------------------------------------------------------------------

    async def close(self) -> None:
        """Takes no more copies, lets the chunk being scored finish, counts what was still
        queued as dropped, and returns once the drainer has stopped."""
        self._closed = True
        task = self._task
        if task is None:
            self._drop_queued()
            return
        if self._wake is not None:
            self._wake.set()
        await asyncio.wait([task])  # its own failure was logged there; cancelled or not, it ended
        self._drop_queued()

    async def _drain(self) -> None:
        assert self._wake is not None
        wake = self._wake
        loop = asyncio.get_running_loop()
        next_start = 0.0
        try:
            while not self._closed:
                if not self._queue:
                    wake.clear()
                    await wake.wait()
                    continue
                delay = next_start - loop.time()
                if delay > 0:
                    # Copies pile up meanwhile; only close() sets the event while some are queued.
                    wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), delay)
                    continue
                next_start = loop.time() + self._interval_s
                while self._queue and not self._closed:
                    await self._score(self._take())
                    await asyncio.sleep(0)  # a chunk at a time: live calls go in between
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "shadow scoring of %s version %s stopped", self.live.name, self.candidate.version
            )
            self._closed = self._failed = True
            self._drop_queued()

    def _take(self) -> list[ShadowCopy]:
        chunk: list[ShadowCopy] = []
        rows = 0
        queue = self._queue
        while queue and (not chunk or rows + len(queue[0].live_probability) <= self._chunk_rows):
            copy = queue.popleft()
            chunk.append(copy)
            rows += len(copy.live_probability)
        self._queued_rows -= rows
        return chunk

    def _drop_queued(self) -> None:
        if self._queue:
            self._record_dropped(
                self.live.name, self.live.version, self.candidate.version, len(self._queue)
            )
            self._queue.clear()
            self._queued_rows = 0

    async def _score(self, chunk: list[ShadowCopy]) -> None:
        live, candidate = self.live, self.candidate
        features = (
            chunk[0].features
            if len(chunk) == 1
            else np.concatenate([c.features for c in chunk], axis=0)
        )
        with self._tracer.start_as_current_span("shadow score") as span:
            try:
                # Through the candidate's batcher: a chunk whose run is estimated under its
                # inline_run_us runs on the loop (cheaper than a thread hand-off, which the
                # profile showed costing the loop more: GIL hand-backs in executor.submit),
                # a bigger one on the batcher's own thread.
                outputs = await candidate.infer(features)
            except Exception as exc:  # the candidate's failure must stay off the live path
                log.warning(
                    "shadow version %s of %s failed: %s", candidate.version, candidate.name, exc
                )
                span.record_exception(exc)
                self._record_dropped(live.name, live.version, candidate.version, len(chunk))
                return
            sizes = np.fromiter((len(c.live_probability) for c in chunk), np.intp, len(chunk))
            p_live = (
                chunk[0].live_probability
                if len(chunk) == 1
                else np.concatenate([c.live_probability for c in chunk])
            )
            p_candidate = outputs[self._candidate_probability].reshape(-1)
            comparison = compare_batch(live, p_live, candidate, p_candidate, sizes)
            if span.is_recording():
                _annotate(span, comparison, [c.link for c in chunk])
        for part in _slices(comparison, RECORD_SLICE):
            self._record(part)
            await asyncio.sleep(0)


def compare(
    live: ServedModel,
    live_outputs: dict[str, np.ndarray],
    candidate: ServedModel,
    outputs: dict[str, np.ndarray],
) -> ShadowComparison:
    """One request's comparison, computed on its own (the reference ``compare_batch`` meets)."""
    p_live = live_outputs[live.config.probability_output].reshape(-1).astype(np.float64)
    p_candidate = outputs[candidate.config.probability_output].reshape(-1).astype(np.float64)
    agreements = int(np.count_nonzero(_bands(p_live, live) == _bands(p_candidate, candidate)))
    rho = rank_correlation(p_live, p_candidate)
    return ShadowComparison(
        model=live.name,
        live_version=live.version,
        candidate_version=candidate.version,
        differences=p_candidate - p_live,
        sizes=np.array([p_live.size], dtype=np.intp),
        band_agreements=np.array([agreements], dtype=np.intp),
        rank_correlations=np.array([np.nan if rho is None else rho]),
    )


def compare_batch(
    live: ServedModel,
    p_live: np.ndarray,
    candidate: ServedModel,
    p_candidate: np.ndarray,
    sizes: np.ndarray,
) -> ShadowComparison:
    """Many requests' comparisons at once: ``p_live`` and ``p_candidate`` hold the requests'
    probabilities one request after the other, ``sizes`` their lengths (each at least 1)."""
    p_live = np.asarray(p_live, dtype=np.float64).reshape(-1)
    p_candidate = np.asarray(p_candidate, dtype=np.float64).reshape(-1)
    sizes = np.asarray(sizes, dtype=np.intp)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.intp)
    agree = (_bands(p_live, live) == _bands(p_candidate, candidate)).astype(np.intp)
    return ShadowComparison(
        model=live.name,
        live_version=live.version,
        candidate_version=candidate.version,
        differences=p_candidate - p_live,
        sizes=sizes,
        band_agreements=np.add.reduceat(agree, starts) if sizes.size else sizes.copy(),
        rank_correlations=_segment_rank_correlations(p_live, p_candidate, sizes, starts),
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


def _segment_rank_correlations(
    a: np.ndarray, b: np.ndarray, sizes: np.ndarray, starts: np.ndarray
) -> np.ndarray:
    """``rank_correlation`` of every request at once. Ranks with ties broken by position are a
    permutation of 0..n-1 within each request, so rho = 1 - 6 Σd² / (n (n² - 1))."""
    rho = np.full(sizes.size, np.nan)
    if not sizes.size or sizes.max() < 2:  # one-lead requests have no rank correlation
        return rho
    segment = np.repeat(np.arange(sizes.size), sizes)
    d = _segment_ranks(a, segment, starts) - _segment_ranks(b, segment, starts)
    squares = np.add.reduceat(d * d, starts)
    n = sizes.astype(np.float64)
    constant = (np.maximum.reduceat(a, starts) == np.minimum.reduceat(a, starts)) | (
        np.maximum.reduceat(b, starts) == np.minimum.reduceat(b, starts)
    )
    defined = (sizes >= 2) & ~constant
    rho[defined] = 1.0 - 6.0 * squares[defined] / (n[defined] * (n[defined] ** 2 - 1.0))
    return rho


def _segment_ranks(values: np.ndarray, segment: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """0-based rank of each value within its request; ties keep request order (lexsort is
    stable, and sorts by its last key first)."""
    order = np.lexsort((values, segment))
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.arange(values.size) - starts[segment[order]]
    return ranks


def _bands(probability: np.ndarray, served: ServedModel) -> np.ndarray:
    bands = served.config.bands
    return np.where(probability >= bands.hot, 0, np.where(probability >= bands.warm, 1, 2))


def _slices(comparison: ShadowComparison, leads: int) -> Sequence[ShadowComparison]:
    """The comparison cut into runs of whole requests of about ``leads`` leads each."""
    if comparison.leads <= leads:
        return [comparison]
    parts = []
    bounds = np.concatenate(([0], np.cumsum(comparison.sizes)))
    first = 0
    while first < comparison.sizes.size:
        last = int(np.searchsorted(bounds, bounds[first] + leads, side="right")) - 1
        last = max(last, first + 1)
        lo, hi = int(bounds[first]), int(bounds[last])
        parts.append(
            ShadowComparison(
                comparison.model,
                comparison.live_version,
                comparison.candidate_version,
                comparison.differences[lo:hi],
                comparison.sizes[first:last],
                comparison.band_agreements[first:last],
                comparison.rank_correlations[first:last],
            )
        )
        first = last
    return parts


def _annotate(
    span: trace.Span, comparison: ShadowComparison, links: Sequence[SpanContext | None]
) -> None:
    """The chunk's figures on its span, and a link to each recorded request (up to
    ``MAX_LINKS``; ``links`` in request order) carrying that request's own comparison."""
    span.set_attribute("leadgw.model", comparison.model)
    span.set_attribute("leadgw.live_version", comparison.live_version)
    span.set_attribute("leadgw.shadow_version", comparison.candidate_version)
    span.set_attribute("leadgw.leads", comparison.leads)
    span.set_attribute("leadgw.shadow.requests", int(comparison.sizes.size))
    span.set_attribute("leadgw.shadow.band_agreements", comparison.agreements)
    span.set_attribute(
        "leadgw.shadow.max_abs_difference",
        float(np.abs(comparison.differences).max(initial=0.0)),
    )
    defined = comparison.rank_correlations[~np.isnan(comparison.rank_correlations)]
    if defined.size:
        span.set_attribute("leadgw.shadow.min_rank_correlation", float(defined.min()))
    bounds = np.concatenate(([0], np.cumsum(comparison.sizes)))
    linked = 0
    for i, link in enumerate(links):
        if link is None:
            continue
        if linked >= MAX_LINKS:
            break
        lo, hi = int(bounds[i]), int(bounds[i + 1])
        attributes: dict[str, int | float] = {
            "leadgw.leads": hi - lo,
            "leadgw.shadow.band_agreements": int(comparison.band_agreements[i]),
            "leadgw.shadow.max_abs_difference": float(np.abs(comparison.differences[lo:hi]).max()),
        }
        rho = float(comparison.rank_correlations[i])
        if not np.isnan(rho):
            attributes["leadgw.shadow.rank_correlation"] = rho
        span.add_link(link, attributes)
        linked += 1
