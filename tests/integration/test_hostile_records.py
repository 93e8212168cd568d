"""The rule for hostile input, property-based, against the real PostgreSQL unit of work.

Whatever a batch holds (random bytes, random JSON, a valid event with one field replaced by
anything at all, surrogates and NUL included, null or odd headers, null keys, tombstones),
every record ends in exactly one state: a customer, skipped as another event type, or
dead-lettered once with a reason naming a field. No exception escapes, and no valid
neighbour is dead-lettered. The store is real because the surrogate bug lived in the driver.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acme_customer.adapters.codec import TopicCodec
from acme_customer.adapters.postgres import PostgresCustomerStore
from acme_customer.adapters.schemas import USER_REGISTERED
from acme_customer.stream.records import Record
from acme_customer.stream.register_customer import RegisterCustomerHandler
from tests.unit.fakes import FakePublisher

pytestmark = pytest.mark.integration

TOPIC = "identity.user.events"
NAME_LETTERS = st.characters(categories=["Lu", "Ll"], max_codepoint=0x24F)


@dataclass(frozen=True)
class Case:
    value: bytes | None
    event_id: str | None  # the eventId when the value is an event-shaped document
    user_id: str | None
    valid: bool  # built to be valid: it must become a customer
    event_type: Any = None


def _event(event_id: uuid.UUID, user_id: uuid.UUID, first: str, last: str) -> dict[str, Any]:
    return {
        "eventId": str(event_id),
        "eventType": "UserRegistered",
        "eventVersion": "1.0",
        "timestamp": "2026-03-04T05:06:07Z",
        "aggregateId": str(user_id),
        "aggregateType": "User",
        "payload": {
            "userId": str(user_id),
            "email": f"u{user_id.hex[:12]}@example.com",
            "firstName": first,
            "lastName": last,
        },
    }


@st.composite
def valid_cases(draw: st.DrawFn) -> Case:
    event_id, user_id = draw(st.uuids(version=4)), draw(st.uuids(version=4))
    first, last = (
        draw(st.text(NAME_LETTERS, min_size=1, max_size=50)),
        draw(st.text(NAME_LETTERS, min_size=1, max_size=50)),
    )
    document = _event(event_id, user_id, first, last)
    return Case(json.dumps(document).encode(), str(event_id), str(user_id), valid=True, event_type="UserRegistered")


# hypothesis leaves surrogates out of text by default: put them in, with NUL and controls
HOSTILE_TEXT = st.builds(
    lambda before, special, after: before + special + after,
    st.text(st.characters(exclude_categories=["Cc"]), max_size=8),
    st.sampled_from(["\ud800", "\udfff", "\ud83d", "\x00", "\x1b", "\u2028"]),
    st.text(st.characters(exclude_categories=["Cc"]), max_size=8),
)
ANYTHING = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | HOSTILE_TEXT,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=6,
)
FIELDS = [
    "eventId", "eventType", "eventVersion", "timestamp", "aggregateId", "aggregateType", "correlationId",
    "causationId", "payload", "payload.userId", "payload.email", "payload.firstName", "payload.lastName",
    "payload.marketingOptIn", "payload.registeredAt",
]  # fmt: skip
TEXT_FIELDS = ["payload.firstName", "payload.lastName", "payload.email", "eventType", "aggregateType", "eventVersion"]


@st.composite
def mutated_cases(draw: st.DrawFn) -> Case:
    """A valid event with one field replaced by anything: any type, any text (surrogates, NUL, controls)."""
    event_id, user_id = draw(st.uuids(version=4)), draw(st.uuids(version=4))
    document = _event(event_id, user_id, "Jane", "Doe")
    # half the time a text field the stores keep gets hostile text: that is where drivers fail
    path = draw(st.sampled_from(FIELDS) | st.sampled_from(TEXT_FIELDS))
    replacement = draw(ANYTHING | HOSTILE_TEXT.map(lambda text: f"Ja{text}ne"))
    target, leaf = (document["payload"], path[8:]) if path.startswith("payload.") else (document, path)
    if isinstance(target, dict):
        target[leaf] = replacement
    value = json.dumps(document).encode()  # ensure_ascii: lone surrogates travel as \ud800 escapes
    real_id = document.get("eventId")
    return Case(
        value,
        real_id if isinstance(real_id, str) else None,
        str(user_id),
        valid=False,
        event_type=document.get("eventType"),
    )


RAW = st.builds(
    lambda value: Case(value, None, None, valid=False),
    st.none() | st.binary(max_size=64) | ANYTHING.map(lambda thing: json.dumps(thing).encode()),
)
HEADERS = st.lists(st.tuples(st.text(max_size=8), st.none() | st.binary(max_size=8)), max_size=3)


def _uuid_or_none(text: Any) -> str | None:
    try:
        return str(uuid.UUID(text)) if isinstance(text, str) else None
    except ValueError:
        return None


def _processed(database_url: str, event_ids: list[str]) -> set[str]:
    with psycopg.connect(database_url) as connection:
        rows = connection.execute(
            "SELECT event_id FROM processed_events WHERE event_id = ANY(%s::uuid[])", (event_ids,)
        ).fetchall()
    return {str(row[0]) for row in rows}


@pytest.fixture(scope="module")
def loop_and_store(adapter_pg_url: str) -> Iterator[tuple[asyncio.AbstractEventLoop, PostgresCustomerStore]]:
    # hypothesis drives a plain function: the store's pool lives on a loop of this module's own
    loop = asyncio.new_event_loop()
    store = PostgresCustomerStore.create(adapter_pg_url)
    loop.run_until_complete(store.open())
    yield loop, store
    loop.run_until_complete(store.close())
    loop.close()


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    cases=st.lists(st.one_of(valid_cases(), mutated_cases(), RAW), min_size=1, max_size=12),
    headers=st.lists(HEADERS, min_size=12, max_size=12),
    null_keys=st.lists(st.booleans(), min_size=12, max_size=12),
)
def test_every_record_of_a_hostile_batch_ends_in_exactly_one_state(
    loop_and_store: tuple[asyncio.AbstractEventLoop, PostgresCustomerStore],
    adapter_pg_url: str,
    cases: list[Case],
    headers: list[list[tuple[str, bytes | None]]],
    null_keys: list[bool],
) -> None:
    loop, store = loop_and_store
    publisher = FakePublisher()
    handler = RegisterCustomerHandler(
        store=store,
        publisher=publisher,
        dead_letters=publisher,
        decode=TopicCodec(TOPIC, USER_REGISTERED, None).decode,
        backoff=(0, 0, 0, 0, 0),
        now=lambda: datetime(2026, 3, 4, 5, 6, 8, tzinfo=UTC),
    )
    offset = uuid.uuid4().int % 10**12  # positions of their own per example
    records = [
        Record(TOPIC, index % 3, offset + index, None if null_keys[index] else b"k", case.value, headers[index])
        for index, case in enumerate(cases)
    ]

    # hypothesis replays ids across examples: what an earlier example created is a duplicate now
    event_ids = [eid for case in cases if (eid := _uuid_or_none(case.event_id))]
    processed_before = _processed(adapter_pg_url, event_ids)

    loop.run_until_complete(handler.handle(records))  # must not raise

    dead = [letter.origin for letter in publisher.dead_letters]
    processed = _processed(adapter_pg_url, event_ids)
    for record, case in zip(records, cases, strict=True):
        letters = dead.count(record.origin)
        assert letters <= 1, "dead-lettered more than once"
        event_id = _uuid_or_none(case.event_id)
        created = event_id in processed
        if case.valid:
            assert (created, letters) == (True, 0), "a valid record must become a customer"
        elif letters:
            assert event_id not in processed - processed_before, "a dead-lettered record left something in PostgreSQL"
        elif not created:  # neither: it must be another event type, skipped
            assert isinstance(case.event_type, str) and case.event_type != "UserRegistered"
    for letter in publisher.dead_letters:
        # validation covers what the store would refuse: nothing reaches it to fail there
        assert letter.error_class == "InvalidEvent", letter.error_message
        assert ":" in letter.error_message  # "field: problem"
