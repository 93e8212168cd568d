"""Log output (logs.py): LOG_FORMAT text and json, the structured fields, and no personal data at INFO+."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from acme_customer.errors import ReadModelUnavailable, StoreUnavailable
from acme_customer.logs import JsonFormatter, TextFormatter, fatal_line, log_fields, logging_config
from tests.unit.fakes import FakeCustomerStore, FakeProfiles, FakePublisher, FakeReadModel
from tests.unit.stream_builders import (
    customer_records,
    event_id,
    make_handler,
    make_projector,
    record,
    user_document,
)

REPO = Path(__file__).resolve().parents[2]
RFC3339_UTC_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def emitted() -> Iterator[tuple[logging.Logger, dict[str, io.StringIO]]]:
    """A logger of our own with one handler per format, each writing to its own buffer."""
    logger = logging.getLogger("acme_customer.tests.logs")
    buffers = {"text": io.StringIO(), "json": io.StringIO()}
    handlers = []
    for name, formatter in (("text", TextFormatter()), ("json", JsonFormatter())):
        handler = logging.StreamHandler(buffers[name])
        handler.setFormatter(formatter)
        logger.addHandler(handler)
        handlers.append(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, buffers
    for handler in handlers:
        logger.removeHandler(handler)
    logger.propagate = True


def json_lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    lines = buffer.getvalue().splitlines()
    documents = [json.loads(line) for line in lines]
    assert all(isinstance(document, dict) for document in documents)
    return documents


# --- the two formats --------------------------------------------------------------------------


def test_a_json_line_holds_time_level_logger_message_and_the_known_fields(emitted: Any) -> None:
    logger, buffers = emitted
    fields = log_fields(
        ("identity.user.events", 3, 100), event_id=event_id(1), customer_id=event_id(2), outcome="created"
    )

    logger.info("customer %s created", "c-1", extra={**fields, "duration_ms": 12.5})

    (document,) = json_lines(buffers["json"])
    timestamp = document.pop("timestamp")
    assert RFC3339_UTC_MS.match(timestamp)
    assert datetime.fromisoformat(timestamp.replace("Z", "+00:00")).tzinfo == UTC
    assert document == {
        "level": "INFO",
        "logger": "acme_customer.tests.logs",
        "message": "customer c-1 created",
        "eventId": str(event_id(1)),
        "customerId": str(event_id(2)),
        "topic": "identity.user.events",
        "partition": 3,
        "offset": 100,
        "outcome": "created",
        "duration_ms": 12.5,
    }


def test_fields_that_are_not_known_are_left_out_of_both_formats(emitted: Any) -> None:
    logger, buffers = emitted

    logger.warning("partition %s/%d waits", "identity.user.events", 5, extra=log_fields(("identity.user.events", 5)))

    (document,) = json_lines(buffers["json"])
    assert set(document) == {"timestamp", "level", "logger", "message", "topic", "partition"}
    assert (
        buffers["text"]
        .getvalue()
        .rstrip("\n")
        .endswith(
            "[WARNING] acme_customer.tests.logs: partition identity.user.events/5 waits"
            " topic=identity.user.events partition=5"
        )
    )


def test_a_text_line_carries_the_fields_after_the_message_and_the_traceback_below(emitted: Any) -> None:
    logger, buffers = emitted
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("failed", extra=log_fields(("identity.user.events", 1, 7), outcome="rejected"))

    first, *rest = buffers["text"].getvalue().splitlines()
    assert re.match(
        r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\] \[\d+\] \[ERROR\] acme_customer\.tests\.logs: failed"
        r" topic=identity\.user\.events partition=1 offset=7 outcome=rejected$",
        first,
    ), first
    assert rest[0] == "Traceback (most recent call last):"
    assert rest[-1] == "RuntimeError: boom"


def test_a_json_line_with_a_traceback_is_still_one_line(emitted: Any) -> None:
    logger, buffers = emitted
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        logger.exception("failed\nacross lines")

    assert len(buffers["json"].getvalue().splitlines()) == 1
    (document,) = json_lines(buffers["json"])
    assert document["message"] == "failed\nacross lines"
    assert document["exception"].startswith("Traceback (most recent call last):")
    assert document["exception"].endswith("ValueError: bad\nvalue")


def test_a_json_line_is_ascii_whatever_text_it_carries(emitted: Any) -> None:
    logger, buffers = emitted

    logger.warning("name %s", "Zoë \udcff \u2028 end")

    raw = buffers["json"].getvalue()
    assert raw.isascii()
    assert len(raw.splitlines()) == 1
    assert json_lines(buffers["json"])[0]["message"] == "name Zoë \udcff \u2028 end"


def test_a_json_line_names_the_trace_and_span_it_was_logged_in(emitted: Any, spans: InMemorySpanExporter) -> None:
    logger, buffers = emitted

    logger.info("outside")
    with trace.get_tracer("tests").start_as_current_span("consume") as span:
        logger.info("inside")

    outside, inside = json_lines(buffers["json"])
    assert "traceId" not in outside
    assert "spanId" not in outside
    assert inside["traceId"] == f"{span.get_span_context().trace_id:032x}"
    assert inside["spanId"] == f"{span.get_span_context().span_id:016x}"


# --- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(("log_format", "formatter"), [("text", TextFormatter), ("json", JsonFormatter)])
def test_the_logging_config_puts_one_stderr_handler_in_the_format_on_the_root_logger(
    log_format: str, formatter: type[logging.Formatter]
) -> None:
    config = logging_config("WARNING", log_format)

    assert config["root"] == {"level": "WARNING", "handlers": ["acme_customer"]}
    assert config["loggers"] == {"acme_customer": {"level": "WARNING"}}
    assert config["handlers"]["acme_customer"]["stream"] is sys.stderr
    assert config["formatters"]["acme_customer"]["()"] is formatter
    assert config["disable_existing_loggers"] is False


def test_an_unknown_log_format_is_refused() -> None:
    with pytest.raises(ValueError, match="xml"):
        logging_config("INFO", "xml")


def test_configure_logging_json_makes_every_stderr_line_a_json_object() -> None:
    """In a separate process: it replaces the root logger's handlers."""
    script = "\n".join(
        [
            "import logging, warnings",
            "from acme_customer.logs import configure_logging",
            "configure_logging('INFO', 'json')",
            "logging.getLogger('faust.worker').info('[^Worker]: Ready')",
            "logging.getLogger('acme_customer.stream').warning('held', extra={'outcome': 'retry'})",
            "logging.getLogger('acme_customer.stream').debug('below the level')",
            "warnings.warn('deprecated thing')",
        ]
    )
    env = {name: value for name, value in os.environ.items() if not name.startswith("OTEL_")}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    documents = [json.loads(line) for line in result.stderr.splitlines()]
    assert [(document["logger"], document["level"]) for document in documents] == [
        ("faust.worker", "INFO"),
        ("acme_customer.stream", "WARNING"),
        ("py.warnings", "WARNING"),
    ]
    assert documents[1]["outcome"] == "retry"
    assert "deprecated thing" in documents[2]["message"]


def test_a_failure_before_logging_is_configured_is_one_line_in_the_format_asked_for() -> None:
    message = "acme-customer: configuration error: DATABASE_URL must be a postgresql:// URL"

    assert fatal_line(message, {}) == message
    assert fatal_line(message, {"LOG_FORMAT": "text"}) == message
    document = json.loads(fatal_line(message, {"LOG_FORMAT": " JSON "}))
    assert RFC3339_UTC_MS.match(document.pop("timestamp"))
    assert document == {"level": "CRITICAL", "logger": "acme_customer", "message": message}


# --- what the handlers log ------------------------------------------------------------------


async def test_a_created_customer_is_logged_with_its_ids_position_outcome_and_duration(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    store, publisher = FakeCustomerStore(), FakePublisher()

    await make_handler(store, publisher).handle([record(user_document(1), offset=41)])

    (created,) = [entry for entry in caplog.records if getattr(entry, "outcome", None) == "created"]
    customer = store.customer_of(next(iter(store.customers.values())).user_id)
    fields = {name: getattr(created, name) for name in ("eventId", "customerId", "topic", "partition", "offset")}
    assert fields == {
        "eventId": str(event_id(1)),
        "customerId": str(customer.customer_id),
        "topic": "identity.user.events",
        "partition": 3,
        "offset": 41,
    }
    assert isinstance(created.duration_ms, float)
    assert created.duration_ms >= 0
    assert created.levelno == logging.INFO


# emails and names distinctive enough that a match cannot be a coincidence
PERSONAL = {
    "payload__email": "quintessa.vandersloot@example.org",
    "payload__firstName": "Quintessa",
    "payload__lastName": "Vandersloot",
}
BAD_EMAIL = "quintessa-at-nowhere"


async def test_no_email_or_name_is_logged_at_info_or_above_in_either_format(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A run that logs every kind of line: created, rejected, retried, isolated, projected after a retry."""
    caplog.set_level(logging.INFO)
    store, publisher = FakeCustomerStore(), FakePublisher()
    store.failures.fail("commit", StoreUnavailable("PostgreSQL unavailable: OperationalError"))
    store.failures.fail("add_customers", RuntimeError("a defect"), when=lambda customers: len(customers) > 1)
    records = [
        record(user_document(1, **PERSONAL), offset=1),
        record(user_document(2, **{**PERSONAL, "payload__email": BAD_EMAIL}), offset=2),
        record(user_document(3, **{**PERSONAL, "payload__email": "q.v.3@example.org"}), offset=3),
    ]

    await make_handler(store, publisher).handle(records)
    read_model = FakeReadModel()
    read_model.failures.fail("upsert", ReadModelUnavailable("MongoDB unavailable"))
    await make_projector(FakeProfiles(store.customers), read_model).handle(customer_records(*publisher.published))

    assert len(read_model.documents) == 2  # the run did what it logs about
    captured = [entry for entry in caplog.records if entry.levelno >= logging.INFO]
    outcomes = {getattr(entry, "outcome", None) for entry in captured}
    assert {"created", "rejected", "retry", "recovered", "isolating"} <= outcomes, outcomes
    assert any(entry.exc_info for entry in captured)  # a traceback is in the capture too
    personal = [*PERSONAL.values(), BAD_EMAIL, "q.v.3@example.org"]
    for formatter in (TextFormatter(), JsonFormatter()):
        for entry in captured:
            line = formatter.format(entry)
            for value in personal:
                assert value.lower() not in line.lower(), f"{value!r} logged: {line}"
