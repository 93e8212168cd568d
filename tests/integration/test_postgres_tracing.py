"""The PostgreSQL adapter's spans, ``persist_customer`` and ``persist_event``, on the real server.

They are recorded by ``register_customers`` over the real unit of work, inside the use case's
``create_customer_profile`` span, with counts as attributes and no personal data.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from acme_customer.adapters.postgres import PostgresCustomerStore
from acme_customer.domain.events import UserRegistered
from acme_customer.service_layer.register_customers import register_customers
from tests.spans import assert_no_pii, named, only, parent_id

pytestmark = pytest.mark.integration

# personal data that must stay out of spans (distinctive, so a match cannot be a coincidence)
EMAIL = "persist.tracing.{n}@example.net"
FIRST_NAME, LAST_NAME = "Philippa", "Postgresova"


def a_user(n: int, registered_at: datetime) -> UserRegistered:
    return UserRegistered(
        event_id=uuid.uuid4(),
        timestamp=registered_at,
        correlation_id=uuid.uuid4(),
        causation_id=None,
        user_id=uuid.uuid4(),
        email=EMAIL.format(n=n),
        first_name=FIRST_NAME,
        last_name=LAST_NAME,
        marketing_opt_in=False,
        registered_at=registered_at,
    )


async def test_persisting_a_batch_records_one_customer_span_and_one_event_span_within_the_use_case(
    adapter_store: PostgresCustomerStore, spans: InMemorySpanExporter
) -> None:
    users = [a_user(n, datetime(2097, 3, 1, tzinfo=UTC)) for n in range(3)]  # the module's database is its own

    outcomes = await register_customers(users, adapter_store, lambda: datetime.now(UTC))

    assert [outcome.created for outcome in outcomes] == [True, True, True]
    finished = spans.get_finished_spans()
    profile = only(finished, "create_customer_profile")
    customers = only(finished, "persist_customer")
    events = only(finished, "persist_event")
    for span in (customers, events):
        assert parent_id(span) == profile.context.span_id
        assert span.context.trace_id == profile.context.trace_id
    assert dict(customers.attributes or {}) == {"db.system": "postgresql", "customer.count": 3}
    assert dict(events.attributes or {}) == {"db.system": "postgresql", "event.count": 3}
    # the event is appended after the customers, in the same transaction
    assert customers.end_time is not None and events.start_time is not None
    assert customers.end_time <= events.start_time
    assert_no_pii(finished, [FIRST_NAME, LAST_NAME, *(user.email for user in users)])


async def test_a_duplicate_persists_nothing_and_records_no_persist_span(
    adapter_store: PostgresCustomerStore, spans: InMemorySpanExporter
) -> None:
    user = a_user(9, datetime(2098, 5, 1, tzinfo=UTC))
    await register_customers([user], adapter_store, lambda: datetime.now(UTC))
    spans.clear()

    (outcome,) = await register_customers([user], adapter_store, lambda: datetime.now(UTC))

    assert not outcome.created
    finished = spans.get_finished_spans()
    assert len(named(finished, "create_customer_profile")) == 1
    assert named(finished, "persist_customer") == []
    assert named(finished, "persist_event") == []
