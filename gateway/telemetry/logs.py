"""Log records as JSON lines (or text for humans), stamped with the current trace and span ids."""

from __future__ import annotations

import json
import logging
import math
import sys
import time
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
        self.encode = json.JSONEncoder(default=str, ensure_ascii=False).encode
        """The JSON of one line's fields (a dict), as ``format`` writes it."""
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
        return self.encode(line)


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


class JsonLines:
    """Writes, for a logger's most frequent line, exactly what logging would write through the
    handler ``configure_logging`` installed, without building a ``LogRecord`` and running the
    handler chain (3.7 µs a line instead of ~14, hot; the audit log writes one per allowed call).

    Only while that handler, in the JSON format, is the one place a record of the logger would
    go: no filter and no other handler on the way to the root (checked at every line, so a
    logging configuration changed at run time is followed). Otherwise ``write`` returns False
    and the caller logs the usual way.
    """

    def __init__(self, logger: logging.Logger, level: int) -> None:
        self._logger = logger
        self._level = level

    def handler(self) -> _LeadgwHandler | None:
        """The handler a record of the logger would reach alone, if it is leadgw's JSON one."""
        found = None
        current: logging.Logger | None = self._logger
        while current is not None:
            if current.filters or current.disabled:
                return None
            for handler in current.handlers:
                if found is not None or type(handler) is not _LeadgwHandler:
                    return None
                found = handler
            if not current.propagate:
                break
            current = current.parent
        if (
            found is None
            or self._level < found.level
            or type(found.formatter) is not JsonFormatter
            or any(type(f) is not TraceContextFilter for f in found.filters)
        ):
            return None
        return found

    def fields(self, handler: _LeadgwHandler, message: str, extra: dict[str, str]) -> str:
        """The encoded fields after the timestamp, as the formatter writes them, to keep and
        pass to ``write``: ``"level": ..., "logger": ..., "message": ..., <extra>``."""
        assert isinstance(handler.formatter, JsonFormatter)
        encoded = handler.formatter.encode(
            {
                "level": logging.getLevelName(self._level),
                "logger": self._logger.name,
                "message": message,
                **extra,
            }
        )
        return encoded[1:-1]

    def write(self, handler: _LeadgwHandler, fields: str) -> bool:
        """Writes one line now (with the current span's ids); False if it could not."""
        assert isinstance(handler.formatter, JsonFormatter)
        stamp = handler.formatter.timestamp(time.time())
        ids = ""
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            ids = (
                f', "trace_id": "{span_context.trace_id:032x}", '
                f'"span_id": "{span_context.span_id:016x}"'
            )
        line = f'{{"timestamp": "{stamp}", {fields}{ids}}}{handler.terminator}'
        try:
            with handler.lock:  # type: ignore[union-attr]  # created by Handler.__init__
                handler.stream.write(line)
                handler.flush()
        except Exception:
            return False
        return True


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
