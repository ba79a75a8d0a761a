"""The audit log: every auth decision (who, what, allowed or why not) on the ``leadgw.audit``
logger. Records carry the tenant, the key's name, the method and the peer address; never the key
nor its hash."""

from __future__ import annotations

import logging

from gateway.auth import Caller
from gateway.telemetry import Metrics
from runtimes.errors import LeadgwError

AUDIT_LOGGER = "leadgw.audit"


class AuditLog:
    """Writes auth decisions; refusals are also counted in ``leadgw.rejections``."""

    def __init__(self, metrics: Metrics | None = None, *, allowed_too: bool = True) -> None:
        self._log = logging.getLogger(AUDIT_LOGGER)
        self._metrics = metrics
        self._allowed_too = allowed_too

    def allowed(self, caller: Caller, method: str, peer: str) -> None:
        if self._allowed_too and self._log.isEnabledFor(logging.INFO):
            self._log.info(
                "allowed %s (tenant %s, key %s) from %s",
                method,
                caller.tenant,
                caller.key_name or "-",
                peer,
                extra=_fields("allowed", caller, method, peer),
            )

    def denied(self, caller: Caller | None, method: str, peer: str, error: LeadgwError) -> None:
        reason = error.status.lower()
        if self._metrics is not None:
            self._metrics.record_rejection("" if caller is None else caller.tenant, reason)
        self._log.warning(
            "denied %s (tenant %s, key %s) from %s: %s",
            method,
            "-" if caller is None else caller.tenant,
            "-" if caller is None or not caller.key_name else caller.key_name,
            peer,
            error.message,
            extra={**_fields("denied", caller, method, peer), "reason": reason},
        )


def _fields(decision: str, caller: Caller | None, method: str, peer: str) -> dict[str, str]:
    return {
        "audit": decision,
        "tenant": "" if caller is None else caller.tenant,
        "key_name": "" if caller is None else caller.key_name,
        "method": method,
        "peer": peer,
    }
