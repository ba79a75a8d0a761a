"""The audit log's allowed lines, written straight to leadgw's log handler when the logging
configuration is leadgw's own, are the bytes logging itself would write; any other
configuration gets ordinary records."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider

from gateway.audit import AUDIT_LOGGER, AuditLog
from gateway.auth import Caller
from gateway.telemetry import configure_logging

METHOD = "/leadgw.v1.LeadService/ScoreLeads"
CALLERS = [
    Caller("acme", frozenset({"score"}), "acme-backend"),
    Caller('zürich "quoted" ü', frozenset({"score"}), ""),  # escaping; no key name: "-"
]
PEERS = ["ipv4:10.0.0.7:53412", "ipv6:[::1]:40000"]


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root, audit, parent = (logging.getLogger(n) for n in ("", AUDIT_LOGGER, "leadgw"))
    saved = [(lg, list(lg.handlers), list(lg.filters), lg.level, lg.propagate)
             for lg in (root, audit, parent)]  # fmt: skip
    yield
    for logger, handlers, filters, level, propagate in saved:
        logger.handlers[:] = handlers
        logger.filters[:] = filters
        logger.setLevel(level)
        logger.propagate = propagate


def leadgw_logging_only(stream: io.StringIO, level: str = "INFO", fmt: str = "json") -> None:
    """configure_logging, and no other handler on the root (pytest adds its own per test)."""
    handler = configure_logging(level, fmt, stream)  # type: ignore[arg-type]
    logging.getLogger().handlers[:] = [handler]


def without_stamps(text: str) -> list[str]:
    return re.sub(r'"timestamp": "[^"]*"', '"timestamp": "T"', text).splitlines()


def allow_everyone(audit: AuditLog) -> None:
    for caller in CALLERS:
        for peer in PEERS:
            audit.allowed(caller, METHOD, peer)
            audit.allowed(caller, METHOD, peer)  # the second from the kept encoding


class PassEverything(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return True


@pytest.mark.parametrize("in_span", [False, True])
def test_lines_are_the_bytes_logging_writes(in_span: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    def lines_of(direct: bool) -> list[str]:
        stream = io.StringIO()
        leadgw_logging_only(stream)
        audit_logger = logging.getLogger(AUDIT_LOGGER)
        if direct:
            monkeypatch.setattr(audit_logger, "makeRecord", no_records)
        else:  # any filter on the way sends records the usual way
            monkeypatch.undo()
            audit_logger.addFilter(PassEverything())
        tracer = TracerProvider().get_tracer("test")
        if in_span:
            with tracer.start_as_current_span("call") as span:
                allow_everyone(AuditLog())
                ids = span.get_span_context()
        else:
            allow_everyone(AuditLog())
        logging.getLogger(AUDIT_LOGGER).filters.clear()
        text = stream.getvalue()
        if in_span:  # the ids differ between the two runs; the rest must not
            text = text.replace(format(ids.trace_id, "032x"), "TRACE")
            text = text.replace(format(ids.span_id, "016x"), "SPAN")
        return without_stamps(text)

    direct, usual = lines_of(direct=True), lines_of(direct=False)
    assert len(direct) == 2 * len(CALLERS) * len(PEERS)
    assert direct == usual
    first = json.loads(direct[0])
    assert (first["audit"], first["tenant"], first["key_name"], first["peer"]) == (
        "allowed",
        "acme",
        "acme-backend",
        PEERS[0],
    )
    assert ("trace_id" in first) is in_span


def no_records(*_args: object, **_kwargs: object) -> None:
    raise AssertionError("a LogRecord was built")


def test_the_default_configuration_builds_no_log_record(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    leadgw_logging_only(stream)
    audit = AuditLog()
    monkeypatch.setattr(logging.getLogger(AUDIT_LOGGER), "makeRecord", no_records)
    allow_everyone(audit)
    assert len(stream.getvalue().splitlines()) == 2 * len(CALLERS) * len(PEERS)


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.parametrize("where", ["audit logger", "leadgw logger", "root"])
def test_another_handler_on_the_way_gets_ordinary_records(where: str) -> None:
    stream = io.StringIO()
    leadgw_logging_only(stream)
    collect = Collect()
    logging.getLogger({"audit logger": AUDIT_LOGGER, "leadgw logger": "leadgw", "root": ""}[where]
                      ).addHandler(collect)  # fmt: skip
    AuditLog().allowed(CALLERS[0], METHOD, PEERS[0])
    (record,) = collect.records
    assert (record.audit, record.tenant, record.method) == ("allowed", "acme", METHOD)  # type: ignore[attr-defined]
    assert len(stream.getvalue().splitlines()) == 1  # leadgw's handler still got its line


def test_text_format_and_a_separate_audit_trail_are_followed() -> None:
    stream = io.StringIO()
    leadgw_logging_only(stream, fmt="text")
    AuditLog().allowed(CALLERS[0], METHOD, PEERS[0])
    assert "leadgw.audit: allowed /leadgw.v1.LeadService/ScoreLeads (tenant acme" in (
        stream.getvalue()
    )
    # The audit trail kept apart: its own handler, not propagated to leadgw's.
    leadgw_logging_only(stream := io.StringIO())
    trail = Collect()
    audit_logger = logging.getLogger(AUDIT_LOGGER)
    audit_logger.addHandler(trail)
    audit_logger.propagate = False
    AuditLog().allowed(CALLERS[0], METHOD, PEERS[0])
    assert len(trail.records) == 1
    assert stream.getvalue() == ""


def test_nothing_is_written_below_the_level_or_with_allowed_lines_off() -> None:
    stream = io.StringIO()
    leadgw_logging_only(stream, level="WARNING")
    AuditLog().allowed(CALLERS[0], METHOD, PEERS[0])
    leadgw_logging_only(stream)
    AuditLog(allowed_too=False).allowed(CALLERS[0], METHOD, PEERS[0])
    assert stream.getvalue() == ""
