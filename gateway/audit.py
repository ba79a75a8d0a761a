"""The audit log: every auth decision (who, what, allowed or why not) on the ``leadgw.audit``
logger. Records carry the tenant, the key's name, the method and the peer address; never the key
nor its hash."""

from __future__ import annotations

import logging

from gateway.auth import Caller
from gateway.telemetry import Metrics
from gateway.telemetry.logs import JsonLines
from runtimes.errors import LeadgwError

AUDIT_LOGGER = "leadgw.audit"
_ALLOWED = "allowed %s (tenant %s, key %s) from %s"


# Allowed lines kept encoded, by (tenant, key name, method, peer); a peer is a connection, so a
# gateway sees few at a time. Past this the cache starts again, which only costs an encoding.
_MAX_KEPT_LINES = 1024


class AuditLog:
    """Writes auth decisions; refusals are also counted in ``leadgw.rejections``.

    An allowed call's line, written for every call by default, is kept encoded per caller,
    method and peer and written straight to leadgw's log handler when the logging configuration
    is leadgw's own (``gateway.telemetry.logs.JsonLines``): the same bytes at ~3.7 µs a line
    instead of ~14 (hot); a line through logging was +60 to +83 µs of a worker's CPU per call
    (docs/perf/2026-11-29-metrics.md). Any other configuration gets ordinary log records."""

    def __init__(self, metrics: Metrics | None = None, *, allowed_too: bool = True) -> None:
        self._log = logging.getLogger(AUDIT_LOGGER)
        self._metrics = metrics
        self._allowed_too = allowed_too
        self._lines = JsonLines(self._log, logging.INFO)
        self._kept: dict[tuple[str, str, str, str], str] = {}

    def allowed(self, caller: Caller, method: str, peer: str) -> None:
        if not (self._allowed_too and self._log.isEnabledFor(logging.INFO)):
            return
        args = (method, caller.tenant, caller.key_name or "-", peer)
        handler = self._lines.handler()
        if handler is not None:
            key = (caller.tenant, caller.key_name, method, peer)
            fields = self._kept.get(key)
            if fields is None:
                if len(self._kept) >= _MAX_KEPT_LINES:
                    self._kept.clear()
                message = _ALLOWED % args
                extra = _fields("allowed", caller, method, peer)
                fields = self._kept[key] = self._lines.fields(handler, message, extra)
            if self._lines.write(handler, fields):
                return
        self._log.info(_ALLOWED, *args, extra=_fields("allowed", caller, method, peer))

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
