"""Builders shared by the stream handlers' tests: records, batches, handlers over fakes."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from prometheus_client import REGISTRY

from acme_customer.adapters.codec import TopicCodec, encode_json
from acme_customer.adapters.schemas import CUSTOMER_REGISTERED, USER_REGISTERED
from acme_customer.domain.customer import Customer, register_customer
from acme_customer.domain.customer_number import CustomerNumber
from acme_customer.domain.events import CustomerRegistered
from acme_customer.stream.project_customer import CustomerEventProjector
from acme_customer.stream.records import Record
from acme_customer.stream.register_customer import RegisterCustomerHandler
from tests.unit.builders import (
    STORY_MOMENT,
    user_registered,
    user_registered_document,
)
from tests.unit.fakes import FakeCustomerStore, FakeProfiles, FakePublisher, FakeReadModel

IDENTITY_TOPIC = "identity.user.events"
CUSTOMER_TOPIC = "customer.events"
NO_WAIT = (0, 0, 0, 0, 0)  # five retries, as AC-09, without the waiting
ATTEMPTS = len(NO_WAIT) + 1


# the real codec without a registry: JSON in, InvalidEvent for everything else
decode = TopicCodec("identity.user.events", USER_REGISTERED, None).decode
decode_customer_events = TopicCodec("customer.events", CUSTOMER_REGISTERED, None).decode


async def encode_json_async(document: dict[str, Any]) -> bytes:
    """The JSON encoder as the publisher calls it (the codec's, without a registry)."""
    return encode_json(document)


def event_id(n: int) -> UUID:
    return UUID(f"01941234-0000-7000-8000-{n:012x}")


def user_id(n: int) -> UUID:
    return UUID(f"01941234-1111-7000-8000-{n:012x}")


def user_document(n: int, **changes: Any) -> dict[str, Any]:
    """A valid UserRegistered of user number ``n`` (its own eventId, userId and email)."""
    defaults: dict[str, Any] = {
        "eventId": str(event_id(n)),
        "aggregateId": str(user_id(n)),
        "payload__userId": str(user_id(n)),
        "payload__email": f"user{n}@example.com",
    }
    return user_registered_document(**{**defaults, **changes})


def record(value: object, offset: int = 0, topic: str = IDENTITY_TOPIC) -> Record:
    """A consumed record: bytes (or None) as they are, anything else as JSON."""
    raw = value if value is None or isinstance(value, bytes) else json.dumps(value).encode()
    return Record(topic, 3, offset, f"key-{offset}".encode(), raw, [("traceparent", f"trace-{offset}".encode())])


def batch(*values: object) -> list[Record]:
    return [record(value, offset) for offset, value in enumerate(values, start=100)]


def make_handler(store: FakeCustomerStore, publisher: FakePublisher) -> RegisterCustomerHandler:
    return RegisterCustomerHandler(
        store=store,
        publisher=publisher,
        decode=decode,
        backoff=NO_WAIT,
        dead_letters=publisher,
        now=lambda: STORY_MOMENT,
    )


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def causations(publisher: FakePublisher) -> list[str]:
    return [envelope["causationId"] for envelope in publisher.published]


def registered(n: int) -> tuple[Customer, CustomerRegistered]:
    user = user_registered(event_id=event_id(n), user_id=user_id(n), email=f"user{n}@example.com")
    return register_customer(user, CustomerNumber("202601", n), STORY_MOMENT)


def customer_records(*values: object) -> list[Record]:
    return [record(value, offset, topic=CUSTOMER_TOPIC) for offset, value in enumerate(values)]


def make_projector(
    profiles: FakeProfiles, read_model: FakeReadModel, publisher: FakePublisher | None = None
) -> CustomerEventProjector:
    return CustomerEventProjector(
        source=profiles,
        read_model=read_model,
        publisher=publisher or FakePublisher(),
        decode=decode_customer_events,
        backoff=NO_WAIT,
    )
