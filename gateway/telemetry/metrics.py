"""leadgw's metric instruments and the small methods components call to record them.

One ``Metrics`` per process, built from the telemetry's meter provider and passed down. It
imports nothing of gRPC, so ``runtimes/`` and ``retrieval/`` can take it as a dependency.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from enum import IntEnum
from typing import TYPE_CHECKING, TypeVar

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, NoOpMeter, Observation

from gateway.telemetry.local_histograms import LocalHistograms

if TYPE_CHECKING:  # plain data; importing them would load the model runtime with the metrics
    from runtimes.control import ControlAction
    from runtimes.shadow import ShadowComparison

log = logging.getLogger(__name__)

METER_NAME = "leadgw"

# Gateway time is sub-millisecond and summaries take seconds: the SDK's default buckets
# (0, 5, 10, 25 ... ms) would put every score in the first one.
LATENCY_BUCKETS_MS = (
    0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000,
)  # fmt: skip
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)
# |shadow - live| probability, fine near 0 where two good models mostly agree. OpenTelemetry
# histograms take no negative values: the sign is the ``direction`` attribute.
DIFFERENCE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
# 1 - Spearman's rho: 0 when both versions order a request's leads alike, 2 when reversed.
RANK_DISTANCE_BUCKETS = (0.001, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)

_K = TypeVar("_K")
_V = TypeVar("_V")

Record = Callable[[float], None]
"""Records one value into one series of a histogram."""

Unregister = Callable[[], None]
"""Returned by the ``observe_*`` methods: call it when the observed thing goes away."""


class BreakerState(IntEnum):
    """Values of the ``leadgw.llm.breaker.state`` gauge."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class _Observed:
    """Callables an observable gauge reads at collection time, each with its attributes.

    Collection runs on the exporter's thread (or Prometheus' HTTP thread), hence the lock.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._sources: dict[int, tuple[Mapping[str, str], Callable[[], float]]] = {}
        self._next_key = 0

    def add(self, attributes: Mapping[str, str], read: Callable[[], float]) -> Unregister:
        with self._lock:
            key = self._next_key
            self._next_key += 1
            self._sources[key] = (dict(attributes), read)

        def unregister() -> None:
            with self._lock:
                self._sources.pop(key, None)

        return unregister

    def __call__(self, _options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            sources = list(self._sources.values())
        observations = []
        for attributes, read in sources:
            # One broken source must not hide the others (the SDK would drop them all).
            try:
                observations.append(Observation(float(read()), attributes))
            except Exception:
                log.exception("reading %s %s failed", self._name, dict(attributes))
        return observations


_ATTRIBUTE_SETS = 1024
"""Attribute sets kept per kind; past that the cache starts again (versions come and go)."""


def _bounded(cache: dict[_K, _V]) -> dict[_K, _V]:
    if len(cache) >= _ATTRIBUTE_SETS:
        cache.clear()
    return cache


class Metrics:
    """Every leadgw instrument. Methods take plain Python values; attributes are bounded sets
    (model names, versions, method names, status codes, reasons), never ids; tenants only on
    rejections (tenants come from the keys file, a bounded set)."""

    def __init__(self, meter: Meter, local: LocalHistograms | None = None) -> None:
        self.recording = not isinstance(meter, NoOpMeter)
        """False for no-op instruments (``noop``, or telemetry with no reader to read them)."""
        self._meter = meter
        self._local = local
        # The series recorded on every call, found once each: one recording function per
        # (method, status) or (model, version) serves every call.
        self._rpc_series: dict[tuple[str, str, int], Record] = {}
        self._model_series: dict[tuple[str, str], tuple[Record, Record, Record]] = {}
        # The four histograms every request records into (local ones where the provider allows:
        # gateway.telemetry.local_histograms). No separate request counter: this histogram's
        # count is one, by method and status (Prometheus: rpc_server_duration_milliseconds_count).
        self._rpc_duration = self._per_request_histogram(
            "rpc.server.duration",
            unit="ms",
            description="Server-side RPC latency and count, by method and status",
            bounds=LATENCY_BUCKETS_MS,
        )
        self._queue_wait = self._per_request_histogram(
            "leadgw.batcher.queue_wait",
            unit="ms",
            description="Time a request waited in the batcher queue",
            bounds=LATENCY_BUCKETS_MS,
        )
        self._batch_size = self._per_request_histogram(
            "leadgw.batch.size",
            unit="{row}",
            description="Rows per executed batch",
            bounds=BATCH_SIZE_BUCKETS,
        )
        self._execution = self._per_request_histogram(
            "leadgw.model.execution.duration",
            unit="ms",
            description="Model execution time per batch",
            bounds=LATENCY_BUCKETS_MS,
        )
        self._llm_tokens = meter.create_counter(
            "leadgw.llm.tokens", unit="{token}", description="LLM tokens, by type (input/output)"
        )
        self._llm_errors = meter.create_counter(
            "leadgw.llm.errors", unit="{error}", description="Failed LLM calls, by reason"
        )
        self._cache_hits = meter.create_counter(
            "leadgw.summary.cache.hits", unit="{lookup}", description="Summary cache hits"
        )
        self._cache_misses = meter.create_counter(
            "leadgw.summary.cache.misses", unit="{lookup}", description="Summary cache misses"
        )
        self._rejections = meter.create_counter(
            "leadgw.rejections",
            unit="{call}",
            description="Calls refused by a tenant limit or authentication, by tenant and reason",
        )
        self._shadow_difference = meter.create_histogram(
            "leadgw.shadow.probability_difference",
            description="|shadow - live| probability per lead scored by both; direction: "
            "higher, lower or same (the shadow's probability compared with live's)",
            explicit_bucket_boundaries_advisory=DIFFERENCE_BUCKETS,
        )
        self._shadow_leads = meter.create_counter(
            "leadgw.shadow.leads",
            unit="{lead}",
            description="Leads scored by both versions, by band agreement (agree/disagree)",
        )
        self._shadow_rank = meter.create_histogram(
            "leadgw.shadow.rank_distance",
            description="1 - Spearman rank correlation of live and shadow scores, per request "
            "of two leads or more (0: same order)",
            explicit_bucket_boundaries_advisory=RANK_DISTANCE_BUCKETS,
        )
        self._shadow_dropped = meter.create_counter(
            "leadgw.shadow.dropped",
            unit="{request}",
            description="Copies of live requests the shadow did not score (overloaded or failed)",
        )
        self._control_actions = meter.create_counter(
            "leadgw.model.control.actions",
            unit="{action}",
            description="Model control actions (load, unload, promote, ...), by outcome",
        )
        self._queue_depth = _Observed("leadgw.batcher.queue_depth")
        meter.create_observable_gauge(
            "leadgw.batcher.queue_depth",
            callbacks=[self._queue_depth],
            unit="{row}",
            description="Rows waiting in a model version's batcher queue",
        )
        self._breaker = _Observed("leadgw.llm.breaker.state")
        meter.create_observable_gauge(
            "leadgw.llm.breaker.state",
            callbacks=[self._breaker],
            description="LLM circuit breaker: 0 closed, 1 half-open, 2 open",
        )

    @classmethod
    def from_provider(cls, meter_provider: MeterProvider | None = None) -> Metrics:
        """Instruments on ``meter_provider``, or on the global one (a no-op until configured)."""
        provider = meter_provider or metrics.get_meter_provider()
        return cls(
            provider.get_meter(METER_NAME), LocalHistograms.for_provider(provider, METER_NAME)
        )

    @classmethod
    def noop(cls) -> Metrics:
        """Instruments that record nothing: the default for components built without telemetry."""
        return cls(NoOpMeter(METER_NAME))

    def _per_request_histogram(
        self, name: str, *, unit: str, description: str, bounds: Sequence[float]
    ) -> Callable[[Mapping[str, str | int]], Record]:
        """A histogram as a function from a series' attributes to that series' recorder."""
        if self._local is not None:
            local = self._local.histogram(name, unit=unit, description=description, bounds=bounds)
            return lambda attributes: local.series(attributes).record
        sdk = self._meter.create_histogram(
            name, unit=unit, description=description, explicit_bucket_boundaries_advisory=bounds
        )
        return lambda attributes: functools.partial(sdk.record, attributes=dict(attributes))

    def record_rpc(self, service: str, method: str, status_code: int, duration_s: float) -> None:
        """One finished RPC (called by the server interceptor)."""
        key = (service, method, status_code)
        record = self._rpc_series.get(key)
        if record is None:
            record = _bounded(self._rpc_series)[key] = self._rpc_duration(
                {
                    "rpc.system": "grpc",
                    "rpc.service": service,
                    "rpc.method": method,
                    "rpc.grpc.status_code": status_code,
                }
            )
        record(duration_s * 1000.0)

    def record_batch(self, model: str, version: str, rows: int, exec_s: float) -> None:
        """One executed batch: its row count and model execution time."""
        size, execution, _ = self._model_series_of(model, version)
        size(rows)
        execution(exec_s * 1000.0)

    def record_queue_wait(self, model: str, version: str, wait_s: float) -> None:
        """How long one request waited in the batcher queue before its batch started."""
        self._model_series_of(model, version)[2](wait_s * 1000.0)

    def _model_series_of(self, model: str, version: str) -> tuple[Record, Record, Record]:
        key = (model, version)
        found = self._model_series.get(key)
        if found is None:
            attributes = {"model": model, "version": version}
            found = _bounded(self._model_series)[key] = (
                self._batch_size(attributes),
                self._execution(attributes),
                self._queue_wait(attributes),
            )
        return found

    def record_llm_tokens(self, input_tokens: int, output_tokens: int) -> None:
        """Tokens of one LLM call (prompt and completion)."""
        if input_tokens:
            self._llm_tokens.add(input_tokens, {"type": "input"})
        if output_tokens:
            self._llm_tokens.add(output_tokens, {"type": "output"})

    def record_llm_error(self, reason: str) -> None:
        """One failed LLM call; ``reason`` is a short fixed word (timeout, http_5xx, ...)."""
        self._llm_errors.add(1, {"reason": reason})

    def record_summary_cache(self, hit: bool) -> None:
        """One summary cache lookup. Hit ratio = hits / (hits + misses)."""
        (self._cache_hits if hit else self._cache_misses).add(1)

    def record_rejection(self, tenant: str, reason: str) -> None:
        """One refused call. ``tenant`` comes from the keys file (a bounded set; "" when the
        caller is unknown); ``reason``: rate_requests, rate_leads, summaries, unauthenticated,
        permission_denied."""
        self._rejections.add(1, {"tenant": tenant, "reason": reason})

    def record_shadow(self, comparison: ShadowComparison) -> None:
        """Requests scored by the live version and its shadow (off the request path): one
        difference per lead, the band agreement counts, one rank distance per request of two
        leads or more."""
        attributes = {
            "model": comparison.model,
            "live_version": comparison.live_version,
            "shadow_version": comparison.candidate_version,
        }
        higher = {**attributes, "direction": "higher"}
        lower = {**attributes, "direction": "lower"}
        same = {**attributes, "direction": "same"}
        record = self._shadow_difference.record
        for difference in comparison.differences.tolist():
            if difference > 0:
                record(difference, higher)
            elif difference < 0:
                record(-difference, lower)
            else:
                record(0.0, same)
        leads = comparison.leads
        agree = comparison.agreements
        if agree:
            self._shadow_leads.add(agree, {**attributes, "band_agreement": "agree"})
        if leads - agree:
            self._shadow_leads.add(leads - agree, {**attributes, "band_agreement": "disagree"})
        for rho in comparison.rank_correlations.tolist():
            if rho == rho:  # NaN: under two leads, or a constant column
                self._shadow_rank.record(max(0.0, 1.0 - rho), attributes)

    def record_shadow_dropped(
        self, model: str, live_version: str, shadow_version: str, copies: int
    ) -> None:
        """Copies of live requests the shadow did not score (its queue was full, it failed, or
        it stopped with copies still queued)."""
        attributes = {
            "model": model,
            "live_version": live_version,
            "shadow_version": shadow_version,
        }
        self._shadow_dropped.add(copies, attributes)

    def record_control(self, action: ControlAction) -> None:
        """One model control action (also in the ``leadgw.audit`` log)."""
        self._control_actions.add(
            1, {"action": action.action, "model": action.model, "outcome": action.outcome}
        )

    def observe_queue_depth(
        self, model: str, depth: Callable[[], int], version: str | None = None
    ) -> Unregister:
        """Reports ``depth()`` (rows waiting) as the queue depth of ``model`` at each collection."""
        attributes = {"model": model} if version is None else {"model": model, "version": version}
        return self._queue_depth.add(attributes, depth)

    def observe_breaker_state(self, endpoint: str, state: Callable[[], int]) -> Unregister:
        """Reports ``state()`` (a ``BreakerState``) as the breaker state of ``endpoint``."""
        return self._breaker.add({"endpoint": endpoint}, state)
