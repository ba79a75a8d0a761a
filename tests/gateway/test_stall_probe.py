"""The stall probe sees a blocked event loop and a garbage collection."""

from __future__ import annotations

import asyncio
import gc
import time

from gateway.stall_probe import BUCKETS_MS, Histogram, StallProbe


async def test_a_blocked_loop_and_a_collection_are_recorded() -> None:
    probe = StallProbe(interval_s=0.001)
    probe.start()
    await asyncio.sleep(0.01)  # the probe task is sleeping now
    time.sleep(0.03)  # holds the loop: the probe wakes at least ~29 ms late
    await asyncio.sleep(0.01)
    gc.collect()
    summary = await probe.stop()
    assert summary["loop_lag"]["max_ms"] >= 25
    assert summary["loop_lag"]["over_5ms"] >= 1
    assert summary["stalls"]["count"] >= 1
    # time.sleep blocks the thread without using a CPU or queueing for one
    assert summary["stall_shares"]["blocked"] > 0.5
    assert summary["gc_pauses"]["2"]["count"] >= 1
    assert probe._on_gc not in gc.callbacks  # stop() leaves the collector as it found it


def test_histogram_quantiles_are_bucket_bounds() -> None:
    histogram = Histogram()
    for ms in [0.05] * 98 + [3.0, 40.0]:
        histogram.add(ms)
    assert histogram.count == 100
    assert histogram.quantile(0.5) == BUCKETS_MS[0]
    assert histogram.quantile(0.99) == 5
    assert histogram.quantile(1.0) == 40.0  # the top bucket reports the maximum seen
    assert histogram.summary()["over_5ms"] == 1
