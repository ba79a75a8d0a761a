"""CPU a batch-1 call costs in the batcher, above the model's own run (thread CPU time, µs).

Loads the bundled lead model as the gateway does and submits one row at a time to a
``DynamicBatcher`` with the model's batching settings, on an idle batcher (each call finds it
idle and runs at once: the common case at one to a few requests in flight). Reports the minimum
and median over ``--reps`` repetitions of the mean CPU per ``submit_with_stats``, and the
model's ``session.run`` alone for scale.

    python scripts/batcher_cost.py [--n 2000] [--reps 15] [--baseline OLD/runtimes/batcher.py]

``--baseline`` loads another version of ``runtimes/batcher.py`` (``git show REV:runtimes/
batcher.py > old.py``) and alternates the two, one repetition each, in this one process: an A/B
that a busy machine disturbs equally on both sides.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from gateway.settings import Settings
from runtimes import batcher as current
from runtimes.repository import ModelRepository
from runtimes.scoring import LeadScorer


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("baseline_batcher", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


async def _per_call_us(batcher: Any, rows: np.ndarray, n: int) -> float:
    started = time.thread_time()
    for _ in range(n):
        await batcher.submit_with_stats(rows)
    return (time.thread_time() - started) / n * 1e6


async def _main(args: argparse.Namespace) -> None:
    settings = Settings()
    repository = ModelRepository(settings.model_repository)
    await repository.load()
    served = LeadScorer(
        repository, default_model=settings.default_model, max_leads=settings.max_leads_per_request
    ).resolve(None, None)
    config = served.config.batching
    versions = {"current": current}
    if args.baseline is not None:
        versions = {"baseline": _load(args.baseline), **versions}
    batchers = {
        name: module.DynamicBatcher.from_config(served.session.run, config, name=name)
        for name, module in versions.items()
    }
    rows = np.random.default_rng(0).random((1, served.width), dtype=np.float32)
    try:
        for batcher in batchers.values():
            for _ in range(500):  # times the first batch, then warms the short path
                await batcher.submit_with_stats(rows)
        figures: dict[str, list[float]] = {name: [] for name in batchers}
        for _ in range(args.reps):
            for name, batcher in batchers.items():
                figures[name].append(await _per_call_us(batcher, rows, args.n))
    finally:
        for batcher in batchers.values():
            await batcher.close()
    started = time.thread_time()
    for _ in range(args.n):
        served.session.run(rows)
    run_us = (time.thread_time() - started) / args.n * 1e6
    for name, values in figures.items():
        print(
            f"{name:8s} submit_with_stats, 1 row: min {min(values):.1f} µs, "
            f"median {statistics.median(values):.1f} µs"
        )
    print(f"session.run alone, 1 row: {run_us:.1f} µs")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="calls per repetition")
    parser.add_argument("--reps", type=int, default=15, help="repetitions (default 15)")
    parser.add_argument("--baseline", type=Path, help="another runtimes/batcher.py to compare")
    asyncio.run(_main(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
