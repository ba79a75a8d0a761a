"""The ``[batching]`` table of a model's config.toml, checked."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

# Keys for which 0 is meaningful (off).
_MAY_BE_ZERO = frozenset({"inline_run_us", "gather_delay_us"})


@dataclass(frozen=True, slots=True)
class BatchingConfig:
    """The ``[batching]`` table of a model's config.toml."""

    max_batch_size: int = 1024
    """Most rows in one run of the model; a larger single request runs alone."""
    max_queue_delay_us: int = 500
    """Longest a request waits for company once a batch could run."""
    max_queue_size: int = 4096
    """Most rows waiting; beyond it submits are refused with RESOURCE_EXHAUSTED."""
    inline_run_us: int = 250
    """Runs the model is known to finish within this run on the event loop, and a request that
    finds the batcher idle runs at once in its own task: for a model this cheap, the hop to the
    executor thread and back costs more than the run, and waiting for company buys nothing.
    0 always batches on the executor thread."""
    gather_delay_us: int = 0
    """Under load, how long a small request that finds the batcher idle waits for company, so
    that back-to-back calls share a run of the model (``runtimes.batcher``: gathering is on
    only while its batches average a few requests and its waits stay busy). 0, the default,
    never waits: every idle call runs at once. 2000 suits many concurrent callers on a
    saturated worker (docs/perf/2026-12-01-gathering.md: 64 in flight gained, 8 in flight
    lost, so it is not on by default)."""

    @property
    def max_queue_delay_s(self) -> float:
        return self.max_queue_delay_us / 1e6

    @property
    def inline_run_s(self) -> float:
        return self.inline_run_us / 1e6

    @property
    def gather_delay_s(self) -> float:
        return self.gather_delay_us / 1e6

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> BatchingConfig:
        """Reads the ``batching`` table of a parsed config.toml (or that table itself); defaults
        when it is absent. A loaded version's is ``ModelConfig.batching``, read already."""
        known = set(config) & _BATCHING_KEYS
        if "batching" in config:
            table = config["batching"]
        elif not known:
            table = {}
        elif known != set(config):
            raise ValueError(f"{sorted(known)} belong in the [batching] table")
        else:
            table = config
        if not isinstance(table, Mapping):
            raise ValueError(f"[batching] must be a table, not {type(table).__name__}")
        return cls.from_table(table)

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> BatchingConfig:
        """Checks the table itself: known keys only (a typo must not silently use a default)."""
        unknown = sorted(set(table) - _BATCHING_KEYS)
        if unknown:
            raise ValueError(
                f"[batching] has unknown keys {unknown}; known: {sorted(_BATCHING_KEYS)}"
            )
        for key, value in table.items():
            # bool is an int subclass; `max_batch_size = true` is a mistake, not 1.
            smallest = 0 if key in _MAY_BE_ZERO else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < smallest:
                kind = "a non-negative" if smallest == 0 else "a positive"
                raise ValueError(f"[batching] {key} must be {kind} integer, got {value!r}")
        return cls(**table)


# Every field is a key of the table: one list, so that a new setting cannot be read here and
# refused there (config_file's schema is held to it by tests/runtimes/test_model_config.py).
_BATCHING_KEYS = frozenset(field.name for field in fields(BatchingConfig))
