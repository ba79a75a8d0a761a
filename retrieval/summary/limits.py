"""Per-tenant limit on concurrent summaries, per process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from runtimes.errors import ResourceExhausted


class TenantLimiter:
    """``limit_for(tenant)``, when given, is that tenant's own limit (else ``max_per_tenant``);
    ``on_refused(tenant)`` is told of every refusal (the gateway counts them)."""

    def __init__(
        self,
        max_per_tenant: int,
        limit_for: Callable[[str], int | None] | None = None,
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        self._max = max_per_tenant
        self._limit_for = limit_for
        self._on_refused = on_refused
        self._running: dict[str, int] = {}

    def running(self, tenant: str) -> int:
        return self._running.get(tenant, 0)

    def limit(self, tenant: str) -> int:
        own = None if self._limit_for is None else self._limit_for(tenant)
        return self._max if own is None else own

    @contextmanager
    def slot(self, tenant: str) -> Iterator[None]:
        """Hold one of the tenant's slots; ResourceExhausted when all are taken."""
        limit = self.limit(tenant)
        if self.running(tenant) >= limit:
            if self._on_refused is not None:
                self._on_refused(tenant)
            raise ResourceExhausted(
                f"tenant already runs {limit} summaries; retry when one has finished",
                retry_after_s=1.0,
            )
        self._running[tenant] = self.running(tenant) + 1
        try:
            yield
        finally:
            left = self._running[tenant] - 1
            if left:
                self._running[tenant] = left
            else:
                del self._running[tenant]
