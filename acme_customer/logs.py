"""Log output: ``LOG_FORMAT=text`` (the default) or ``json``, one line per record either way.

The service's log calls pass structured fields in ``extra`` (``log_fields``: eventId,
customerId, topic, partition, offset, outcome, duration_ms); both formats print them, the
text format as ``key=value`` after the message, the JSON format as members of the object.
The JSON format also names the trace and span the line was logged in (traceId, spanId).

``logging_config`` is a ``logging.config.dictConfig`` dictionary: the worker hands it to
Faust (``app.conf.logging_config``), which applies it in place of its own when the worker
starts, so Faust's, aiokafka's and this service's lines come out in one format, on stderr.
No personal data (email, names) is logged at INFO or above; nothing here adds any.
"""

from __future__ import annotations

import json
import logging
import logging.config
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

LOG_FORMATS = ("text", "json")
# what a log call may pass in ``extra`` (build it with ``log_fields``), in the order printed
LOG_FIELDS = ("eventId", "customerId", "topic", "partition", "offset", "outcome", "duration_ms")
TEXT_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"


def log_fields(
    origin: tuple[str, int, int] | tuple[str, int] | None = None,
    *,
    event_id: object = None,
    customer_id: object = None,
    outcome: str | None = None,
    duration_ms: float | None = None,
) -> dict[str, object]:
    """``extra`` for a log call: the fields that are known (``origin``: topic, partition[, offset])."""
    fields: dict[str, object] = {}
    if event_id is not None:
        fields["eventId"] = str(event_id)
    if customer_id is not None:
        fields["customerId"] = str(customer_id)
    if origin is not None:
        fields["topic"], fields["partition"] = origin[0], origin[1]
        if len(origin) == 3:
            fields["offset"] = origin[2]
    if outcome is not None:
        fields["outcome"] = outcome
    if duration_ms is not None:
        fields["duration_ms"] = round(duration_ms, 3)
    return fields


def _fields_of(record: logging.LogRecord) -> dict[str, object]:
    return {name: record.__dict__[name] for name in LOG_FIELDS if name in record.__dict__}


class TextFormatter(logging.Formatter):
    """``[time] [pid] [LEVEL] logger: message key=value …``, the traceback (if any) on the lines after."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{name}={value}" for name, value in _fields_of(record).items())
        line = super().formatMessage(record)
        return f"{line} {fields}" if fields else line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp (UTC), level, logger, message, the known fields, the trace."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, object] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")[:-6] + "Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_fields_of(record),
        }
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            document["traceId"] = f"{span_context.trace_id:032x}"
            document["spanId"] = f"{span_context.span_id:016x}"
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            document["exception"] = record.exc_text
        if record.stack_info:
            document["stack"] = self.formatStack(record.stack_info)
        # ASCII escapes: a line always encodes, whatever text (an unpaired surrogate) it carries
        return json.dumps(document, default=str, ensure_ascii=True)


def logging_config(level: str, log_format: str) -> dict[str, Any]:
    """The ``dictConfig`` of the service: one stderr handler on the root logger, in ``log_format``."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {LOG_FORMATS}, got {log_format!r}")
    formatter = JsonFormatter if log_format == "json" else TextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,  # libraries' loggers exist before this runs
        "formatters": {"acme_customer": {"()": formatter}},
        "handlers": {
            "acme_customer": {"class": "logging.StreamHandler", "formatter": "acme_customer", "stream": sys.stderr}
        },
        "root": {"level": level, "handlers": ["acme_customer"]},
        "loggers": {"acme_customer": {"level": level}},
    }


def configure_logging(level: str, log_format: str = "text") -> None:
    """Apply ``logging_config`` now, and route ``warnings`` through it."""
    logging.config.dictConfig(logging_config(level, log_format))
    logging.captureWarnings(True)  # a warning is a log line too, in the same format


def fatal_line(message: str, env: Mapping[str, str]) -> str:
    """A line for a failure before logging is configured (a bad setting), in the format ``LOG_FORMAT`` asks for."""
    if env.get("LOG_FORMAT", "").strip().lower() != "json":
        return message
    record = logging.LogRecord("acme_customer", logging.CRITICAL, __file__, 0, message, None, None)
    return JsonFormatter().format(record)
