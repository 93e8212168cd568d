"""Tracing: the story's spans ("Tracing Spans" in US-0002-03), their attributes, and no PII in them.

The spans are read with an in-memory exporter (tests/spans.py). The batch's consume span and
the trace's way across Kafka are in test_trace_continuation.py; ``persist_customer`` and
``persist_event`` (the PostgreSQL adapter) in tests/integration/test_postgres_tracing.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from acme_customer.adapters.kafka import CUSTOMER_EVENTS, KafkaPublisher
from acme_customer.domain.events import UserRegistered
from acme_customer.errors import ConfigError
from acme_customer.observability import configure_tracing
from acme_customer.service_layer.project_customers import project_customers
from acme_customer.service_layer.register_customers import register_customers
from tests.spans import assert_no_pii as assert_no_personal_data
from tests.spans import named
from tests.unit.builders import STORY_MOMENT, user_registered
from tests.unit.fakes import FakeCustomerStore, FakeProducer, FakeProfiles, FakeReadModel
from tests.unit.stream_builders import encode_json_async

REPO = Path(__file__).resolve().parents[2]

# two users registered in two different months, with personal data that must stay out of spans
JANE = user_registered(
    event_id=UUID("01941234-0000-7000-8000-00000000a001"),
    user_id=UUID("01941234-1111-7000-8000-00000000a001"),
    email="jane.tracing@example.com",
    first_name="Janelle",
    last_name="Doolittle",
    registered_at=datetime(2026, 1, 31, 23, 59, 59, tzinfo=UTC),
)
MAX = user_registered(
    event_id=UUID("01941234-0000-7000-8000-00000000a002"),
    user_id=UUID("01941234-1111-7000-8000-00000000a002"),
    email="max.tracing@example.org",
    first_name="Maximilian",
    last_name="Mustermann",
    registered_at=datetime(2026, 2, 1, 0, 0, 1, tzinfo=UTC),
)
USERS = (JANE, MAX)
PII = [value for user in USERS for value in (user.email, user.first_name, user.last_name)]


def now() -> datetime:
    return STORY_MOMENT


def assert_no_pii(finished: Sequence[ReadableSpan]) -> None:
    assert_no_personal_data(finished, PII)


async def created_events(users: Sequence[UserRegistered] = USERS) -> tuple[FakeCustomerStore, list[Any]]:
    store = FakeCustomerStore()
    outcomes = await register_customers(list(users), store, now)
    events = [outcome.event for outcome in outcomes]
    assert all(event is not None for event in events)
    return store, events


# --- create_customer_profile / generate_customer_number --------------------------------------


async def test_create_customers_records_a_profile_span_and_one_number_span_per_month(
    spans: InMemorySpanExporter,
) -> None:
    store, _ = await created_events()
    assert store.commits == 1
    finished = spans.get_finished_spans()

    (profile,) = named(finished, "create_customer_profile")
    assert profile.attributes is not None
    assert profile.attributes["batch.size"] == 2

    numbers = named(finished, "generate_customer_number")
    assert len(numbers) == 2
    by_month = {span.attributes["customer_number.year_month"]: span for span in numbers if span.attributes}
    assert set(by_month) == {"202601", "202602"}
    for span in numbers:
        assert span.attributes is not None
        assert span.attributes["customer_number.count"] == 1
        # the number reservation happens within the use case's span
        assert span.parent is not None
        assert span.parent.span_id == profile.context.span_id
        assert span.context.trace_id == profile.context.trace_id
    assert_no_pii(finished)


async def test_two_users_in_the_same_month_share_one_number_span(spans: InMemorySpanExporter) -> None:
    same_month = user_registered(
        event_id=UUID("01941234-0000-7000-8000-00000000a003"),
        user_id=UUID("01941234-1111-7000-8000-00000000a003"),
        email="max.tracing@example.org",
        first_name="Maximilian",
        last_name="Mustermann",
        registered_at=datetime(2026, 1, 15, tzinfo=UTC),
    )
    await created_events([JANE, same_month])
    (number,) = named(spans.get_finished_spans(), "generate_customer_number")
    assert number.attributes is not None
    assert number.attributes["customer_number.year_month"] == "202601"
    assert number.attributes["customer_number.count"] == 2


# --- publish_customer_registered ------------------------------------------------------------


async def test_publishing_records_a_span_with_the_destination_and_the_batch_size(spans: InMemorySpanExporter) -> None:
    _, events = await created_events()
    spans.clear()
    producer = FakeProducer()

    await KafkaPublisher(producer, encode_json_async, ack_timeout_s=5).publish_customer_registered(events)

    assert [sent["topic"] for sent in producer.sent] == [CUSTOMER_EVENTS, CUSTOMER_EVENTS]
    (publish,) = named(spans.get_finished_spans(), "publish_customer_registered")
    assert publish.attributes is not None
    assert publish.attributes["messaging.destination.name"] == "customer.events"
    assert publish.attributes["messaging.batch.message_count"] == 2
    assert_no_pii(spans.get_finished_spans())


async def test_publishing_an_empty_batch_records_no_span(spans: InMemorySpanExporter) -> None:
    producer = FakeProducer()
    await KafkaPublisher(producer, encode_json_async).publish_customer_registered([])
    assert producer.sent == []
    assert named(spans.get_finished_spans(), "publish_customer_registered") == []


async def test_published_records_carry_the_w3c_traceparent_of_the_current_trace(spans: InMemorySpanExporter) -> None:
    _, events = await created_events()
    spans.clear()
    producer = FakeProducer()

    with trace.get_tracer("tests").start_as_current_span("consume") as parent:
        await KafkaPublisher(producer, encode_json_async, ack_timeout_s=5).publish_customer_registered(events)

    (publish,) = named(spans.get_finished_spans(), "publish_customer_registered")
    assert publish.parent is not None
    assert publish.parent.span_id == parent.get_span_context().span_id
    trace_id = parent.get_span_context().trace_id
    assert publish.context.trace_id == trace_id
    # version 00, the trace, the publish span as parent, and the span's flags (sampled)
    flags = int(publish.context.trace_flags)
    assert flags & 0x01
    expected = f"00-{trace_id:032x}-{publish.context.span_id:016x}-{flags:02x}".encode()
    assert len(producer.sent) == 2
    for sent in producer.sent:
        headers = dict(sent["headers"])
        assert headers["traceparent"] == expected
        assert headers["eventType"] == b"CustomerRegistered"


# --- project_read_model ---------------------------------------------------------------------


async def test_projecting_records_a_read_model_span_with_the_customer_count(spans: InMemorySpanExporter) -> None:
    store, events = await created_events()
    spans.clear()
    read_model = FakeReadModel()

    written = await project_customers([event.to_dict() for event in events], FakeProfiles(store.customers), read_model)

    assert written == 2
    (projection,) = named(spans.get_finished_spans(), "project_read_model")
    assert projection.attributes is not None
    assert projection.attributes["customer.count"] == 2
    assert_no_pii(spans.get_finished_spans())


# --- no PII ---------------------------------------------------------------------------------


async def test_no_span_attribute_carries_an_email_or_a_name(spans: InMemorySpanExporter) -> None:
    with trace.get_tracer("tests").start_as_current_span("consume"):
        store, events = await created_events()
        await KafkaPublisher(FakeProducer(), encode_json_async, ack_timeout_s=5).publish_customer_registered(events)
        await project_customers([event.to_dict() for event in events], FakeProfiles(store.customers), FakeReadModel())

    finished = spans.get_finished_spans()
    assert {span.name for span in finished} >= {
        "create_customer_profile",
        "generate_customer_number",
        "publish_customer_registered",
        "project_read_model",
    }
    assert_no_pii(finished)


# --- configure_tracing ----------------------------------------------------------------------


@pytest.mark.parametrize("env", [{}, {"OTEL_TRACES_EXPORTER": "none"}, {"OTEL_TRACES_EXPORTER": " None "}])
def test_configure_tracing_without_an_exporter_installs_nothing(env: dict[str, str]) -> None:
    before = trace.get_tracer_provider()
    assert configure_tracing(env) is None
    assert trace.get_tracer_provider() is before


def test_configure_tracing_refuses_an_unknown_exporter_naming_the_allowed_values() -> None:
    with pytest.raises(ConfigError) as raised:
        configure_tracing({"OTEL_TRACES_EXPORTER": "zipkin"})
    message = str(raised.value)
    assert "zipkin" in message
    for allowed in ("none", "console", "otlp"):
        assert allowed in message


def test_configure_tracing_console_prints_finished_spans() -> None:
    """In a separate process: it replaces the global provider."""
    script = "\n".join(
        [
            "from opentelemetry import trace",
            "from acme_customer.observability import configure_tracing",
            "assert configure_tracing({'OTEL_TRACES_EXPORTER': 'console'}) == 'console'",
            "with trace.get_tracer('t').start_as_current_span('x'):",
            "    pass",
            "trace.get_tracer_provider().force_flush()",
        ]
    )
    env = {name: value for name, value in os.environ.items() if not name.startswith("OTEL_")}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert '"name": "x"' in result.stdout
    assert '"service.name": "customer-service"' in result.stdout
