"""Per-tenant rate limits on scoring: requests per second and leads per second.

Each tenant has two token buckets (requests, leads) that refill at the tenant's rate and hold up
to ``rate_burst_s`` seconds of it. The buckets live in one table of shared memory that the
supervisor creates before it starts the workers (``SharedBuckets``), so a limit holds for the
gateway as a whole however the kernel spreads connections over the worker processes. A lock shared
by the processes guards the table; it is held for a few arithmetic operations per call.

A tenant's slot is found by a stable hash of its name (open addressing), so every worker finds
the same slot without coordination, and a keys-file reload keeps the buckets' state.
"""

from __future__ import annotations

import hashlib
import logging
import math
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from gateway.auth import TenantLimits, current_caller
from gateway.errors import abort_with
from gateway.interceptors import Behavior, Handler, HandlerWrapper, rewrap
from gateway.telemetry import Metrics
from runtimes.errors import ResourceExhausted

log = logging.getLogger(__name__)

SLOTS = 1024
"""Tenants the table can hold; past that, new tenants are not limited (and it is logged)."""
_FIELDS = 4  # request tokens, request stamp, lead tokens, lead stamp
LOCK_TIMEOUT_S = 0.05
"""A worker that died holding the lock must not stop the others: past this, calls pass."""

LIMITED_METHODS = {
    "/leadgw.v1.LeadService/ScoreLeads",
    "/inference.GRPCInferenceService/ModelInfer",
}


@dataclass(frozen=True)
class SharedBuckets:
    """The bucket table in shared memory. Passed to spawned workers as a process argument."""

    keys: Any  # RawArray of uint64: the tenant hash owning each slot, 0 when free
    values: Any  # RawArray of double: _FIELDS per slot
    lock: Any  # a multiprocessing Lock

    @classmethod
    def create(cls, slots: int = SLOTS) -> SharedBuckets:
        context = multiprocessing.get_context("spawn")
        return cls(
            context.RawArray("Q", slots), context.RawArray("d", slots * _FIELDS), context.Lock()
        )


@dataclass(frozen=True, slots=True)
class Rates:
    """The limits in force for one tenant; None or inf: no limit."""

    requests_per_s: float | None
    leads_per_s: float | None

    @property
    def unlimited(self) -> bool:
        return _off(self.requests_per_s) and _off(self.leads_per_s)


def _off(rate: float | None) -> bool:
    return rate is None or math.isinf(rate)


def _tenant_hash(tenant: str) -> int:
    # Python's hash() differs per process; the workers need the same slot for the same tenant.
    return int.from_bytes(hashlib.blake2b(tenant.encode(), digest_size=8).digest(), "big") | 1


class RateLimiter:
    """One per process, over the shared table."""

    def __init__(
        self,
        buckets: SharedBuckets,
        rates_of: Callable[[str], Rates],
        burst_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,  # CLOCK_MONOTONIC: one clock for all workers
    ) -> None:
        self._buckets = buckets
        self._rates_of = rates_of
        self._burst_s = burst_s
        self._clock = clock
        self._slots: dict[str, int | None] = {}

    def check(self, tenant: str, leads: int) -> None:
        """Takes one request and ``leads`` leads from the tenant's buckets, or neither.

        Raises ResourceExhausted (reason in ``.reason``: requests or leads) with the wait
        after which the call would pass."""
        rates = self._rates_of(tenant)
        if rates.unlimited:
            return
        slot = self._slot(tenant)
        if slot is None:
            return
        values = self._buckets.values
        base = slot * _FIELDS
        if not self._buckets.lock.acquire(timeout=LOCK_TIMEOUT_S):
            log.error("rate-limit table lock not acquired in time; call let through")
            return
        try:
            now = self._clock()
            requests = self._refill(values, base, rates.requests_per_s, now)
            leads_now = self._refill(values, base + 2, rates.leads_per_s, now)
            wait = _shortfall(requests, 1, rates.requests_per_s, self._burst_s)
            reason = "requests"
            if wait == 0.0:
                wait = _shortfall(leads_now, leads, rates.leads_per_s, self._burst_s)
                reason = "leads"
            if wait == 0.0:
                if requests is not None:
                    values[base] = requests - 1
                if leads_now is not None:
                    values[base + 2] = leads_now - leads
        finally:
            self._buckets.lock.release()
        if wait > 0.0:
            per_s = rates.requests_per_s if reason == "requests" else rates.leads_per_s
            raise RateLimited(
                f"tenant {tenant!r} is over its rate limit of {per_s:g} {reason}/s; "
                f"retry in {wait * 1000:.0f} ms",
                retry_after_s=wait,
                reason=reason,
            )

    def _refill(self, values: Any, at: int, rate: float | None, now: float) -> float | None:
        """The bucket's tokens now (and stamps it), or None if this rate is off."""
        if _off(rate):
            return None
        assert rate is not None
        capacity = max(rate * self._burst_s, 1.0)
        stamp = values[at + 1]
        tokens = capacity if stamp == 0.0 else min(capacity, values[at] + (now - stamp) * rate)
        values[at], values[at + 1] = tokens, now
        return tokens

    def _slot(self, tenant: str) -> int | None:
        if tenant in self._slots:
            return self._slots[tenant]
        wanted = _tenant_hash(tenant)
        keys = self._buckets.keys
        size = len(keys)
        found = None
        with self._buckets.lock:
            for probe in range(size):
                index = (wanted + probe) % size
                if keys[index] in (0, wanted):
                    keys[index] = wanted
                    found = index
                    break
        if found is None:
            log.error("rate-limit table full (%d tenants): tenant %r is not limited", size, tenant)
        self._slots[tenant] = found
        return found


def _shortfall(tokens: float | None, cost: int, rate: float | None, burst_s: float) -> float:
    """Seconds until ``cost`` can be taken (0: now). A cost above the bucket's size passes when
    the bucket is full and leaves it in debt, so no request is refused forever."""
    if tokens is None or rate is None:
        return 0.0
    needed = min(float(cost), max(rate * burst_s, 1.0))
    return 0.0 if tokens >= needed else (needed - tokens) / rate


class RateLimited(ResourceExhausted):
    def __init__(self, message: str, retry_after_s: float, reason: str) -> None:
        super().__init__(message, retry_after_s=retry_after_s)
        self.reason = reason


def rates_from(
    limits_of: Callable[[str], TenantLimits] | None,
    default_requests_per_s: float | None,
    default_leads_per_s: float | None,
) -> Callable[[str], Rates]:
    """The rates in force per tenant: its keys-file overrides, else the settings' defaults."""
    default = Rates(default_requests_per_s, default_leads_per_s)

    def rates_of(tenant: str) -> Rates:
        if limits_of is None:
            return default
        own = limits_of(tenant)
        return Rates(
            own.requests_per_s if own.requests_per_s is not None else default_requests_per_s,
            own.leads_per_s if own.leads_per_s is not None else default_leads_per_s,
        )

    return rates_of


def leads_in(request: Any) -> int:
    """Leads (rows) in a ScoreLeads or ModelInfer request; at least 1."""
    leads = getattr(request, "leads", None)
    if leads is not None:
        return max(1, len(leads) or len(request.columns.lead_ids))
    inputs = getattr(request, "inputs", None)
    if inputs:
        shape = inputs[0].shape
        return max(1, int(shape[0]) if shape else 1)
    return 1


def rate_limiting(limiter: RateLimiter | None, metrics: Metrics) -> HandlerWrapper:
    """A handler wrapper (see gateway.interceptors): scoring calls over the tenant's limits are
    refused with RESOURCE_EXHAUSTED and a retry delay, counted by tenant and reason."""

    def wrap(path: str, handler: Handler) -> Handler:
        if limiter is None or path not in LIMITED_METHODS:
            return handler

        async def admit(request: Any, context: grpc.aio.ServicerContext) -> None:
            tenant = current_caller().tenant
            try:
                limiter.check(tenant, leads_in(request))
            except RateLimited as refused:
                metrics.record_rejection(tenant, f"rate_{refused.reason}")
                await abort_with(context, refused, path)

        def unary(behavior: Behavior) -> Behavior:
            async def limited(request: Any, context: grpc.aio.ServicerContext) -> Any:
                await admit(request, context)
                return await behavior(request, context)

            return limited

        return rewrap(handler, unary, lambda behavior: behavior)  # both methods are unary

    return wrap
