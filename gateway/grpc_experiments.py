"""gRPC core's experiments, chosen for the gateway's processes before gRPC starts in them.

grpcio reads ``GRPC_EXPERIMENTS`` once, when ``grpc`` is first imported in a process; setting it
afterwards changes nothing. So ``leadgw serve`` sets it from the ``grpc_experiments`` setting
before it imports the server, and the workers, spawned later, inherit it.

The default turns off two of grpcio 1.85's EventEngine experiments, ``event_engine_client`` and
``event_engine_listener``: with them on (grpcio's default), every call's socket reads, writes
and wake-ups run on EventEngine's pool of threads and hop to the completion-queue poller and the
event loop; off, the poller thread does that I/O itself, as grpcio did for years before. On the
2-core machine: ~50 µs (13%) less CPU a batch-1 call for one worker, 4-10% for two pinned
workers, and ModelInfer's throughput at 64 in flight +13%; a bare grpc.aio server saves ~36 µs a
call too (docs/perf/2026-12-01-grpc-experiments.md). The names are grpcio 1.85's; a grpcio that
no longer knows one logs "Unknown experiment" and runs its defaults.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, MutableMapping

VARIABLE = "GRPC_EXPERIMENTS"
DEFAULT = "-event_engine_client,-event_engine_listener"
# What grpc's parser accepts: names, each optionally negated with "-", comma-separated.
_ITEM = re.compile(r"-?[a-z][a-z0-9_]*")


def check(value: str) -> str:
    """``value`` with spaces around its items removed; a ValueError names a malformed item."""
    items = [item.strip() for item in value.split(",")] if value.strip() else []
    for item in items:
        if not _ITEM.fullmatch(item):
            raise ValueError(
                f"grpc_experiments: {item!r} is not an experiment name (lower case, digits and "
                "_, optionally preceded by - to turn it off), in a comma-separated list"
            )
    return ",".join(items)


def apply(setting: str, environ: MutableMapping[str, str] = os.environ) -> bool:
    """Sets ``GRPC_EXPERIMENTS`` to ``setting`` for this process and the processes it starts;
    True when it did. It does not when the environment already sets it (grpc's own variable,
    set on purpose, wins), when ``setting`` is empty (grpc's defaults), or when ``grpc`` is
    already imported here: grpc has read its configuration, and the variable would then claim
    experiments this process does not run."""
    if VARIABLE in environ or not setting or "grpc" in sys.modules:
        return False
    environ[VARIABLE] = setting
    return True


def in_effect(environ: Mapping[str, str] = os.environ) -> str:
    """The experiments this process runs with, for its start-up log line."""
    return environ.get(VARIABLE) or "grpc's defaults"
