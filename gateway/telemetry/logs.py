"""Log records as JSON lines (or text for humans), stamped with the current trace and span ids."""

from __future__ import annotations

import json
import logging
import math
import sys
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from opentelemetry import trace

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is output.
_RECORD_FIELDS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class TraceContextFilter(logging.Filter):
    """Adds ``trace_id`` and ``span_id`` (hex) to records logged while a span is current.

    Runs on the handler, in the logging thread, so it sees the caller's context. Code run through
    ``loop.run_in_executor`` does not carry the context; ``asyncio.to_thread`` does.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            record.trace_id = format(span_context.trace_id, "032x")
            record.span_id = format(span_context.span_id, "016x")
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, message, trace ids, extra fields.

    Formats a line in ~5.5 µs instead of ~8 (a line per allowed call when the audit log logs
    them all: docs/perf/2026-11-29-metrics.md): the timestamp's date and time to the second is
    kept from the previous line of the same second, and one encoder serves every line.
    """

    def __init__(self) -> None:
        super().__init__()
        self._encode = json.JSONEncoder(default=str, ensure_ascii=False).encode
        self._second: tuple[int, str] = (-1, "")  # replaced whole: handlers may share formatters

    def timestamp(self, created: float) -> str:
        """``created`` as ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (UTC), rounded as ``datetime`` rounds it:
        to the microsecond, half to even, then cut to the millisecond."""
        fraction, whole = math.modf(created)
        micros = round(fraction * 1e6)
        second = int(whole)
        if micros >= 1_000_000:
            second, micros = second + 1, micros - 1_000_000
        elif micros < 0:  # before 1970: modf keeps the sign
            second, micros = second - 1, micros + 1_000_000
        cached_second, text = self._second
        if second != cached_second:
            text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._second = (second, text)
        return f"{text}.{micros // 1000:03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "timestamp": self.timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return self._encode(line)


class TextFormatter(logging.Formatter):
    """``time level logger: message [trace_id=… span_id=…]``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        trace_id = getattr(record, "trace_id", None)
        if trace_id is None:
            return text
        span_id = getattr(record, "span_id", "")
        first, newline, rest = text.partition("\n")  # keep ids on the message line, not after
        return f"{first} [trace_id={trace_id} span_id={span_id}]{newline}{rest}"


class _LeadgwHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler ``configure_logging`` installed, so a second call replaces it."""


def configure_logging(
    level: str | int = "INFO",
    fmt: Literal["json", "text"] = "json",
    stream: TextIO | None = None,
) -> logging.Handler:
    """Sends the root logger's records to ``stream`` (stderr) as JSON lines or text.

    Replaces a handler installed by an earlier call and leaves other handlers alone.
    """
    if fmt not in ("json", "text"):
        raise ValueError(f"log format must be 'json' or 'text', not {fmt!r}")
    root = logging.getLogger()
    root.setLevel(level.upper() if isinstance(level, str) else level)
    for old in [h for h in root.handlers if isinstance(h, _LeadgwHandler)]:
        root.removeHandler(old)
        old.close()
    handler = _LeadgwHandler(stream or sys.stderr)
    handler.addFilter(TraceContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    return handler
