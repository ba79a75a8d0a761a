"""Per-tenant limit on concurrent summaries, per process."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from runtimes.errors import ResourceExhausted


class TenantLimiter:
    def __init__(self, max_per_tenant: int) -> None:
        self._max = max_per_tenant
        self._running: dict[str, int] = {}

    def running(self, tenant: str) -> int:
        return self._running.get(tenant, 0)

    @contextmanager
    def slot(self, tenant: str) -> Iterator[None]:
        """Hold one of the tenant's slots; ResourceExhausted when all are taken."""
        if self.running(tenant) >= self._max:
            raise ResourceExhausted(
                f"tenant already runs {self._max} summaries; retry when one has finished",
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
