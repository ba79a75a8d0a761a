"""HdrHistograms of latencies in microseconds, passed between processes in their encoded form."""

from __future__ import annotations

from dataclasses import dataclass

from hdrh.histogram import HdrHistogram

# One microsecond to two minutes at three significant digits: any deadline the CLI allows fits.
LOWEST_US = 1
HIGHEST_US = 120_000_000
DIGITS = 3


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)


def record_seconds(histogram: HdrHistogram, seconds: float) -> None:
    # Clamped: a value outside the range would be silently dropped by the histogram.
    histogram.record_value(min(max(int(seconds * 1e6), LOWEST_US), HIGHEST_US))


def merge(encoded: list[bytes]) -> HdrHistogram:
    merged = new_histogram()
    for item in encoded:
        merged.decode_and_add(item)
    return merged


@dataclass(frozen=True, slots=True)
class Percentiles:
    """Latency figures in milliseconds; all zero when nothing was recorded."""

    count: int
    p50: float
    p90: float
    p99: float
    p999: float
    max: float
    mean: float

    @classmethod
    def of(cls, histogram: HdrHistogram) -> Percentiles:
        count = histogram.get_total_count()
        if count == 0:
            return cls(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        values = histogram.get_percentile_to_value_dict([50, 90, 99, 99.9])
        return cls(
            count=count,
            p50=values[50] / 1000,
            p90=values[90] / 1000,
            p99=values[99] / 1000,
            p999=values[99.9] / 1000,
            max=histogram.get_max_value() / 1000,
            mean=histogram.get_mean_value() / 1000,
        )
