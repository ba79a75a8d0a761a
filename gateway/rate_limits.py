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

import asyncio
import hashlib
import logging
import math
import multiprocessing
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import grpc

from gateway.auth import TenantLimits, current_caller
from gateway.errors import Trailers, retry_trailers
from gateway.interceptors import Behavior, Handler, HandlerWrapper, rewrap
from gateway.telemetry import Metrics

log = logging.getLogger(__name__)

SLOTS = 1024
"""Tenants the table can hold; past that, new tenants are not limited (and it is logged)."""
_FIELDS = 4  # request tokens, request stamp, lead tokens, lead stamp
_REQUESTS, _LEADS = 0, 2  # where each bucket (tokens, then stamp) starts in a slot
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

    def take_request(self, tenant: str) -> Refusal | None:
        """Takes one request from the tenant's request bucket, or says why not (and when a
        retry would pass). Needs only the tenant: it runs before the request is decoded."""
        per_s = self._rates_of(tenant).requests_per_s
        wait = self._take(tenant, _REQUESTS, per_s, 1)
        return None if wait == 0.0 or per_s is None else Refusal("requests", wait, per_s)

    def take_leads(self, tenant: str, leads: int, *, refund_request: bool = True) -> Refusal | None:
        """Takes ``leads`` from the tenant's lead bucket, or says why not. Runs once the request
        is decoded and after ``take_request``: a refusal gives the request token back, so a
        call takes one request and its leads, or neither."""
        rates = self._rates_of(tenant)
        per_s = rates.leads_per_s
        refund = rates.requests_per_s if refund_request else None
        wait = self._take(tenant, _LEADS, per_s, leads, refund_requests_per_s=refund)
        return None if wait == 0.0 or per_s is None else Refusal("leads", wait, per_s)

    def _take(
        self,
        tenant: str,
        bucket: int,
        per_s: float | None,
        cost: int,
        *,
        refund_requests_per_s: float | None = None,
    ) -> float:
        """Takes ``cost`` tokens from one of the tenant's buckets; the seconds until they could
        be taken when they cannot (0.0: taken, or nothing to limit). A refusal with
        ``refund_requests_per_s`` gives the request bucket back the token this call took."""
        if _off(per_s):
            return 0.0
        slot = self._slot(tenant)
        if slot is None or not self._acquire():
            return 0.0
        values, base = self._buckets.values, slot * _FIELDS
        try:
            tokens = self._refill(values, base + bucket, per_s, self._clock())
            wait = _shortfall(tokens, cost, per_s, self._burst_s)
            if wait == 0.0:
                assert tokens is not None
                values[base + bucket] = tokens - cost
            elif refund_requests_per_s is not None and not _off(refund_requests_per_s):
                capacity = max(refund_requests_per_s * self._burst_s, 1.0)
                values[base + _REQUESTS] = min(capacity, values[base + _REQUESTS] + 1)
        finally:
            self._buckets.lock.release()
        return wait

    def _acquire(self) -> bool:
        if self._buckets.lock.acquire(timeout=LOCK_TIMEOUT_S):
            return True
        log.error("rate-limit table lock not acquired in time; call let through")
        return False

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


_EXHAUSTED_CODE: int = grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]


def retry_ms(wait_s: float) -> int:
    """The retry delay sent for a wait, rounded *up* (a retry after it passes) to buckets: 1 ms
    to 100 ms, then two significant digits. A flood's refusals then share a handful of delays,
    whose statuses are built once (``RefusalStatuses``)."""
    ms = max(1, math.ceil(wait_s * 1000.0))
    if ms <= 100:
        return ms
    step = 10 ** (len(str(ms)) - 2)
    return -(-ms // step) * step


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a call is over its tenant's limit, and when a retry would pass."""

    reason: str  # "requests" or "leads"
    wait_s: float
    per_s: float  # the limit

    def message(self, tenant: str) -> str:
        return (
            f"tenant {tenant!r} is over its rate limit of {self.per_s:g} {self.reason}/s; "
            f"retry in {retry_ms(self.wait_s)} ms"
        )

    def after(self, held_s: float) -> Refusal:
        """The refusal as it stands ``held_s`` seconds later: that much less to wait."""
        return replace(self, wait_s=max(0.0, self.wait_s - held_s))


HOLD_DEADLINE_MARGIN_S = 0.02
"""A held refusal is sent at least this long before the caller's deadline."""
HOLD_TICK_S = 0.01
"""Held refusals are released together every this often (``RefusalHold.hold``)."""
MAX_HELD_REFUSALS = 16
"""Refusals one worker holds at once; past that, refusals are sent at once. Held calls are not
free for the other tenants, though they cost the worker no more CPU: with ~50 held at once (an
open-loop flood of 1,000 calls/s) another tenant's p99 rose 1.34-1.50-fold against 1.07-1.23
with refusals sent at once; with at most 16 held, 1.21 (docs/perf/2026-11-29-hold.md). A client
that waits for its answers keeps fewer calls in flight than that, and is held whole."""


class RefusalHold:
    """Holds each rate-limit refusal ``seconds`` to twice that (at random) before sending it,
    or until just before the caller's deadline if that comes first.

    A client that ignores ``RetryInfo`` and keeps calls in flight sends as fast as its refusals
    come back: answered at once, a flood of 8 calls in flight sent ~2,800 calls/s at a
    two-worker gateway, and their gRPC work raised another tenant's p99 1.65- to 2.2-fold
    (docs/perf/2026-11-29-hold.md). Held, each in-flight call can be refused at most
    ``1 / seconds`` times a second. A client that honours ``RetryInfo`` loses nothing it would
    not have waited anyway, beyond the hold when its retry delay was shorter: the delay it is
    sent is what remains after the hold.
    """

    def __init__(self, seconds: float, max_held: int = MAX_HELD_REFUSALS) -> None:
        self.seconds = seconds
        self.max_held = max_held
        self.held = 0  # refusals waiting now, in this process
        self._ticks: dict[int, list[asyncio.Future[None]]] = {}  # release tick → its waiters

    def seconds_for(self, time_remaining: float | None) -> float:
        """The least time to hold a refusal whose caller has ``time_remaining`` (None: no
        deadline); 0: send it at once."""
        if self.seconds <= 0.0 or self.held >= self.max_held:
            return 0.0
        if time_remaining is None:
            return self.seconds
        return max(0.0, min(self.seconds, time_remaining - HOLD_DEADLINE_MARGIN_S))

    async def hold(self, refusal: Refusal, time_remaining: float | None) -> Refusal:
        """Waits as ``seconds_for`` says and up to as long again, at random, but never past
        ``HOLD_DEADLINE_MARGIN_S`` before the caller's deadline; the refusal as it stands then.

        The random part keeps the calls a client sent together from coming back together, to be
        sent again together (B's p99 beside 8 held calls in flight: 1.12-1.14 with it, 1.18-1.26
        without). Refusals are released in ticks of ``HOLD_TICK_S`` (a hold is then up to one
        tick longer): those of one tick are sent in one turn of the event loop, so gRPC writes
        them to a connection together rather than one wake-up and one write each."""
        seconds = self.seconds_for(time_remaining)
        if seconds <= 0.0:
            return refusal
        latest = math.inf if time_remaining is None else time_remaining - HOLD_DEADLINE_MARGIN_S
        wanted = seconds + random.uniform(0.0, seconds)
        loop = asyncio.get_running_loop()
        started = loop.time()
        self.held += 1
        try:
            if wanted + HOLD_TICK_S > latest:  # a tick could pass the deadline: exactly this
                await asyncio.sleep(min(wanted, latest))
            else:
                await self._tick_after(loop, started + wanted)
        finally:
            self.held -= 1
        return refusal.after(loop.time() - started)

    async def _tick_after(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        tick = math.ceil(at / HOLD_TICK_S)
        waiters = self._ticks.get(tick)
        if waiters is None:
            waiters = self._ticks[tick] = []
            loop.call_at(tick * HOLD_TICK_S, self._release, tick)
        waiter = loop.create_future()
        waiters.append(waiter)
        await waiter

    def _release(self, tick: int) -> None:
        for waiter in self._ticks.pop(tick, ()):
            if not waiter.done():  # a cancelled caller's waiter is done already
                waiter.set_result(None)


class RefusalStatuses:
    """The message and trailers (``RetryInfo`` status detail, ``retry-after-ms``) of each
    distinct refusal (tenant, reason, limit, delay bucket), serialized once and reused."""

    def __init__(self, size: int = 1024) -> None:
        self._size = size
        self._built: dict[tuple[str, str, float, int], tuple[str, Trailers]] = {}

    def of(self, tenant: str, refusal: Refusal) -> tuple[str, Trailers]:
        delay_ms = retry_ms(refusal.wait_s)
        key = (tenant, refusal.reason, refusal.per_s, delay_ms)
        found = self._built.get(key)
        if found is None:
            if len(self._built) >= self._size:
                self._built.clear()  # bounded; a flood needs only a handful of entries
            message = refusal.message(tenant)
            found = self._built[key] = (message, retry_trailers(message, delay_ms))
        return found


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


def request_rate_limiting(
    limiter: RateLimiter | None, metrics: Metrics, hold: RefusalHold | None = None
) -> HandlerWrapper:
    """A handler wrapper (see gateway.interceptors) for the requests/s limit, placed right inside
    authentication: a call over its tenant's limit is refused before its request is decoded and
    before a span is started, so that a flood's refusals cost as little as the gateway can make
    them. The refusal is still counted: in ``leadgw.rejections`` (reason ``rate_requests``) and,
    as a span would have, in the RPC duration metric with status RESOURCE_EXHAUSTED (its time
    including the ``hold``)."""
    hold = hold or RefusalHold(0.0)

    def wrap(path: str, handler: Handler) -> Handler:
        if limiter is None or path not in LIMITED_METHODS:
            return handler
        service, _, method = path.lstrip("/").partition("/")
        statuses = RefusalStatuses()

        def unary(behavior: Behavior) -> Behavior:
            async def limited(request: Any, context: grpc.aio.ServicerContext) -> Any:
                started = time.perf_counter()
                tenant = current_caller().tenant
                refusal = limiter.take_request(tenant)
                if refusal is None:
                    return await behavior(request, context)
                metrics.record_rejection(tenant, "rate_requests")
                refusal = await hold.hold(refusal, context.time_remaining())
                message, trailers = statuses.of(tenant, refusal)
                metrics.record_rpc(service, method, _EXHAUSTED_CODE, time.perf_counter() - started)
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, message, trailers)

            return limited

        return rewrap(handler, unary, lambda behavior: behavior)  # both methods are unary

    return wrap


def lead_rate_limiting(
    limiter: RateLimiter | None, metrics: Metrics, hold: RefusalHold | None = None
) -> HandlerWrapper:
    """A handler wrapper for the leads/s limit: it needs the request's lead count, so it runs
    inside request decoding (and so inside the span). A refusal gives back the request token
    ``request_rate_limiting`` took, and is held as that wrapper's are."""
    hold = hold or RefusalHold(0.0)

    def wrap(path: str, handler: Handler) -> Handler:
        if limiter is None or path not in LIMITED_METHODS:
            return handler
        statuses = RefusalStatuses()

        def unary(behavior: Behavior) -> Behavior:
            async def limited(request: Any, context: grpc.aio.ServicerContext) -> Any:
                tenant = current_caller().tenant
                refusal = limiter.take_leads(tenant, leads_in(request))
                if refusal is None:
                    return await behavior(request, context)
                metrics.record_rejection(tenant, "rate_leads")
                refusal = await hold.hold(refusal, context.time_remaining())
                message, trailers = statuses.of(tenant, refusal)
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, message, trailers)

            return limited

        return rewrap(handler, unary, lambda behavior: behavior)

    return wrap
