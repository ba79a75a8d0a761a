"""Histograms recorded on every request, aggregated in leadgw's own code and handed to the
OpenTelemetry SDK's metric readers whole, at collection.

Why: the SDK's synchronous ``Histogram.record`` cleans and hashes the attributes again on every
call, builds a ``Measurement``, asks the exemplar filter and takes two locks: ~7 µs a record
hot, and a batch-1 request records four (its RPC's duration, its batch's size and run time, its
queue wait): 28 µs (``scripts/metrics_cost.py``). In a serving worker, a Prometheus endpoint
cost a ScoreLeads call +63 µs of CPU over none (docs/perf/2026-11-29-metrics.md). Here a record
finds its series once (a bound handle, as prometheus_client's ``labels()``), then adds to a
bucket under one lock: ~2 µs for the four.

What a reader sees is what the SDK's own explicit-bucket histogram would give it: one
``Histogram`` metric per instrument, one cumulative data point per attribute set, with count,
sum, bucket counts, min and max, in the meter's scope beside the SDK's instruments. It carries no
exemplars. It is used only where that is exact: every reader of the provider takes histograms
cumulatively (Prometheus always does; OTLP unless told to prefer delta), and the installed SDK
has the reader hook this relies on (``MetricReader._collect``, set by the provider). Otherwise
``LocalHistograms.for_provider`` returns None and the SDK's instruments are used as before.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricReader,
    MetricsData,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

log = logging.getLogger(__name__)

Attributes = Mapping[str, str | int]


class Series:
    """One attribute set of a histogram: a handle to record into."""

    __slots__ = (
        "_bounds",
        "_lock",
        "attributes",
        "count",
        "counts",
        "max",
        "min",
        "start_ns",
        "sum",
    )

    def __init__(self, attributes: Attributes, bounds: Sequence[float]) -> None:
        self.attributes = dict(attributes)
        self._bounds = bounds
        # Records come from the event loop and executor threads, reads from the exporter's.
        self._lock = threading.Lock()
        self.counts = [0] * (len(bounds) + 1)
        self.count = 0
        self.sum = 0.0
        self.min = float("inf")
        self.max = float("-inf")
        self.start_ns = time.time_ns()

    def record(self, value: float) -> None:
        """Adds one value. Negative values are dropped, as the SDK's histograms drop them."""
        if value < 0:
            return
        # Bucket i holds (bounds[i-1], bounds[i]]: a value on a bound counts below it, as in
        # the SDK's explicit-bucket aggregation.
        bucket = bisect_left(self._bounds, value)
        with self._lock:
            self.counts[bucket] += 1
            self.count += 1
            self.sum += value
            if value < self.min:
                self.min = value
            if value > self.max:
                self.max = value

    def point(self, now_ns: int) -> HistogramDataPoint | None:
        with self._lock:
            if not self.count:
                return None
            return HistogramDataPoint(
                attributes=self.attributes,
                start_time_unix_nano=self.start_ns,
                time_unix_nano=now_ns,
                count=self.count,
                sum=self.sum,
                bucket_counts=tuple(self.counts),
                explicit_bounds=tuple(self._bounds),
                min=self.min,
                max=self.max,
            )


class LocalHistogram:
    """One histogram instrument: its name, unit, description, bucket bounds and series."""

    def __init__(self, name: str, unit: str, description: str, bounds: Sequence[float]) -> None:
        self.name = name
        self.unit = unit
        self.description = description
        self._bounds = tuple(float(b) for b in bounds)
        self._series: dict[tuple[tuple[str, str | int], ...], Series] = {}
        self._lock = threading.Lock()

    def series(self, attributes: Attributes) -> Series:
        """The series of ``attributes`` (created on first use). Callers keep the handle."""
        key = tuple(sorted(attributes.items()))
        found = self._series.get(key)
        if found is None:
            with self._lock:
                found = self._series.setdefault(key, Series(attributes, self._bounds))
        return found

    def metric(self, now_ns: int) -> Metric | None:
        with self._lock:
            series = list(self._series.values())
        points = [p for p in (s.point(now_ns) for s in series) if p is not None]
        if not points:
            return None
        return Metric(
            name=self.name,
            description=self.description,
            unit=self.unit,
            data=Histogram(
                data_points=points, aggregation_temporality=AggregationTemporality.CUMULATIVE
            ),
        )


_CollectCallback = Callable[..., MetricsData | None]

# One group per provider, so that every ``Metrics`` built on a provider shares its histograms,
# as the SDK shares an instrument between meters asking for the same name.
_GROUPS: weakref.WeakKeyDictionary[SdkMeterProvider, LocalHistograms] = weakref.WeakKeyDictionary()
_GROUPS_LOCK = threading.Lock()


class LocalHistograms:
    """The local histograms of one meter provider and scope, added to each of its readers'
    collections."""

    def __init__(self, scope_name: str, resource: Any) -> None:
        self._scope = InstrumentationScope(scope_name)
        self._resource = resource
        self._histograms: dict[str, LocalHistogram] = {}
        self._lock = threading.Lock()

    @classmethod
    def for_provider(cls, provider: object, scope_name: str) -> LocalHistograms | None:
        """The provider's group, attached to its readers on first use; None when the provider
        is not the SDK's, has no reader, a reader takes histograms as deltas, or the SDK lacks
        the hook (then the SDK's instruments serve)."""
        if not isinstance(provider, SdkMeterProvider):
            return None
        with _GROUPS_LOCK:
            found = _GROUPS.get(provider)
            if found is not None:
                return found
            resource = getattr(getattr(provider, "_sdk_config", None), "resource", None)
            readers: Sequence[MetricReader] = getattr(provider, "_metric_readers", ())
            if resource is None or not readers:
                return None
            if not all(map(_hookable_cumulative, readers)):
                log.info(
                    "per-request histograms recorded through the OpenTelemetry SDK (~25 µs "
                    "more CPU a request): a metric reader takes histograms as deltas, or this "
                    "SDK has no reader hook"
                )
                return None
            group = cls(scope_name, resource)
            for reader in readers:
                group._attach(reader)
            _GROUPS[provider] = group
            return group

    def histogram(
        self, name: str, *, unit: str = "", description: str = "", bounds: Sequence[float]
    ) -> LocalHistogram:
        with self._lock:
            found = self._histograms.get(name)
            if found is None:
                found = self._histograms[name] = LocalHistogram(name, unit, description, bounds)
            return found

    def _attach(self, reader: MetricReader) -> None:
        collect: _CollectCallback = reader._collect  # type: ignore[assignment]

        def collect_with_local(*args: Any, **kwargs: Any) -> MetricsData | None:
            return self._merged(collect(*args, **kwargs))

        reader._collect = collect_with_local  # type: ignore[assignment]

    def _merged(self, data: MetricsData | None) -> MetricsData | None:
        now_ns = time.time_ns()
        with self._lock:
            histograms = list(self._histograms.values())
        local = [m for m in (h.metric(now_ns) for h in histograms) if m is not None]
        if not local:
            return data
        if data is None or not data.resource_metrics:
            return MetricsData(
                resource_metrics=[
                    ResourceMetrics(
                        resource=self._resource,
                        scope_metrics=[ScopeMetrics(self._scope, local, "")],
                        schema_url=self._resource.schema_url,
                    )
                ]
            )
        first, *rest = data.resource_metrics
        return MetricsData(
            resource_metrics=[
                ResourceMetrics(
                    resource=first.resource,
                    scope_metrics=_with_scope_metrics(first.scope_metrics, self._scope, local),
                    schema_url=first.schema_url,
                ),
                *rest,
            ]
        )


def _with_scope_metrics(
    scopes: Iterable[ScopeMetrics], scope: InstrumentationScope, metrics: list[Metric]
) -> list[ScopeMetrics]:
    """The scopes with ``metrics`` added to the one named as ``scope`` (or a new one)."""
    merged, added = [], False
    for existing in scopes:
        if not added and existing.scope.name == scope.name:
            existing = ScopeMetrics(
                existing.scope, [*existing.metrics, *metrics], existing.schema_url
            )
            added = True
        merged.append(existing)
    if not added:
        merged.append(ScopeMetrics(scope, metrics, ""))
    return merged


def _hookable_cumulative(reader: MetricReader) -> bool:
    # The reader's preferences are keyed by the SDK's instrument classes (``_Histogram``).
    preferences = getattr(reader, "_instrument_class_temporality", {})
    temporality = next((t for k, t in preferences.items() if k.__name__ == "_Histogram"), None)
    return (
        callable(getattr(reader, "_collect", None))
        and temporality is AggregationTemporality.CUMULATIVE
    )
