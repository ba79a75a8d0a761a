"""When to retry a failed call, and how long to wait first.

The gateway refuses with ``UNAVAILABLE`` (draining, a store down) or ``RESOURCE_EXHAUSTED``
(a queue full, a rate limit). With the refusal it may say how long to wait: the standard
``google.rpc.RetryInfo`` detail in the ``grpc-status-details-bin`` trailer, or the older
``retry-after-ms`` trailer (deprecated). A wait the server names is honoured; otherwise the
wait grows exponentially with full jitter.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

import grpc
from google.rpc import error_details_pb2, status_pb2

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
_DETAILS_TRAILER = "grpc-status-details-bin"
_LEGACY_TRAILER = "retry-after-ms"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retries of a call refused with a retryable status, all inside the call's deadline."""

    max_attempts: int = 4
    """Attempts in all, the first included; 1 turns retries off."""
    initial_backoff_s: float = 0.05
    max_backoff_s: float = 2.0
    multiplier: float = 2.0

    def backoff_s(self, attempt: int, rng: random.Random) -> float:
        """Full-jitter exponential backoff before attempt ``attempt + 1`` (``attempt`` ≥ 1)."""
        ceiling = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** (attempt - 1))
        return rng.uniform(0.0, ceiling)


def server_delay_s(trailing_metadata: Iterable[tuple[str, str | bytes]] | None) -> float | None:
    """The wait the server asked for, in seconds, or None when it named none."""
    legacy = None
    for key, value in trailing_metadata or ():
        if key == _DETAILS_TRAILER and isinstance(value, bytes):
            delay = _retry_info_delay(value)
            if delay is not None:
                return delay
        elif key == _LEGACY_TRAILER:
            try:
                legacy = max(0.0, float(value) / 1000.0)
            except ValueError:
                continue
    return legacy


def _retry_info_delay(serialized_status: bytes) -> float | None:
    status = status_pb2.Status()
    try:
        status.ParseFromString(serialized_status)
    except Exception:  # a malformed trailer is no instruction; fall back to our own backoff
        return None
    for detail in status.details:
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            return max(0.0, info.retry_delay.seconds + info.retry_delay.nanos / 1e9)
    return None
