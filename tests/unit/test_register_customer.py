"""The register-customer flow at the stream edge, over fakes: UserRegistered records to customers."""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any
from uuid import UUID

import pytest
from prometheus_client import REGISTRY

from acme_customer.errors import (
    PublishFailed,
    RecordRejected,
    RegistryUnavailable,
    StoreConflict,
    StoreUnavailable,
)
from acme_customer.service_layer.register_customers import register_customers
from acme_customer.stream.records import Record
from acme_customer.stream.register_customer import RegisterCustomerHandler
from tests.unit.builders import (
    CORRELATION_ID,
    MISSING,
    STORY_MOMENT,
    USER_EVENT_ID,
    USER_ID,
    user_registered,
    user_registered_document,
)
from tests.unit.fakes import FakeCustomerStore, FakePublisher
from tests.unit.stream_builders import (
    ATTEMPTS,
    IDENTITY_TOPIC,
    NO_WAIT,
    batch,
    causations,
    decode,
    event_id,
    make_handler,
    record,
    sample,
    user_document,
    user_id,
)

# --- a valid UserRegistered ---------------------------------------------------------------------


async def test_a_valid_user_registered_creates_one_customer_and_publishes_its_event() -> None:
    store, publisher = FakeCustomerStore(), FakePublisher()

    await make_handler(store, publisher).handle([record(user_registered_document())])

    customer = store.customer_of(USER_ID)
    assert len(store.customers) == 1
    assert str(customer.customer_number) == "ACME-202601-000001"
    assert (customer.first_name, customer.last_name, customer.email) == ("Jane", "Doe", "customer@example.com")
    (envelope,) = publisher.published
    assert envelope == store.event_of(customer.customer_id)
    assert envelope["eventType"] == "CustomerRegistered"
    assert envelope["aggregateId"] == str(customer.customer_id)
    assert envelope["causationId"] == str(USER_EVENT_ID)  # AC-06
    assert envelope["correlationId"] == str(CORRELATION_ID)
    assert store.mark_published_calls == [[UUID(envelope["eventId"])]]
    assert store.published == {UUID(envelope["eventId"])}
    assert store.processed == {USER_EVENT_ID: customer.customer_id}
    assert publisher.dead_letters == []


async def test_ac06_without_a_correlation_id_the_user_registered_event_id_is_the_correlation() -> None:
    store, publisher = FakeCustomerStore(), FakePublisher()

    await make_handler(store, publisher).handle([record(user_registered_document(correlationId=MISSING))])

    (envelope,) = publisher.published
    assert envelope["correlationId"] == str(USER_EVENT_ID)
    assert envelope["causationId"] == str(USER_EVENT_ID)


async def test_a_batch_of_new_users_gets_consecutive_customer_numbers_in_one_transaction() -> None:
    store, publisher = FakeCustomerStore(), FakePublisher()

    await make_handler(store, publisher).handle(batch(user_document(1), user_document(2), user_document(3)))

    assert [str(store.customer_of(user_id(n)).customer_number) for n in (1, 2, 3)] == [
        "ACME-202601-000001",
        "ACME-202601-000002",
        "ACME-202601-000003",
    ]
    assert store.commits == 1
    assert causations(publisher) == [str(event_id(n)) for n in (1, 2, 3)]


# --- invalid input goes to the DLQ at once ------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"this is not json", "value: not Avro or JSON"),
        (None, "value: null (a tombstone)"),
        ([user_document(2)], "event: expected a JSON object, got an array"),
        (user_document(2, payload=MISSING), "payload: missing"),
        (user_document(2, payload__email="jane.at.example.com"), "payload.email: not an email address"),
        (user_document(2, payload__firstName="J" * 51), "payload.firstName: longer than 50 characters"),
    ],
    ids=["not-json", "empty", "json-array", "missing-payload", "bad-email", "51-char-first-name"],
)
async def test_an_invalid_record_is_dead_lettered_at_once_with_its_reason_and_its_neighbours_are_created(
    value: object, reason: str
) -> None:
    store, publisher = FakeCustomerStore(), FakePublisher()
    records = batch(user_document(1), value, user_document(3))

    await make_handler(store, publisher).handle(records)

    (dead,) = publisher.dead_letters
    assert (dead.error_class, dead.error_message, dead.attempts) == ("InvalidEvent", reason, 1)
    assert (dead.key, dead.value, dead.origin, dead.headers) == (
        records[1].key,
        records[1].value,  # the original bytes, unchanged
        (IDENTITY_TOPIC, 3, 101),
        records[1].headers,
    )
    assert {customer.user_id for customer in store.customers.values()} == {user_id(1), user_id(3)}
    assert store.customer_numbers() == ["ACME-202601-000001", "ACME-202601-000002"]
    assert causations(publisher) == [str(event_id(1)), str(event_id(3))]


async def test_several_invalid_records_are_each_dead_lettered_in_order() -> None:
    store, publisher = FakeCustomerStore(), FakePublisher()

    await make_handler(store, publisher).handle(
        batch(b"{", user_document(2, payload__lastName="  "), user_document(3, eventVersion="2.0"))
    )

    assert [(dead.origin[2], dead.error_class, dead.error_message) for dead in publisher.dead_letters] == [
        (100, "InvalidEvent", "value: not Avro or JSON"),
        (101, "InvalidEvent", "payload.lastName: empty or only whitespace"),
        (102, "InvalidEvent", "eventVersion: unsupported major version (this service reads 1.x)"),
    ]
    assert store.customers == {}
    assert store.units_of_work == []  # nothing valid: the database is not asked
    assert publisher.published == []


async def test_a_deeply_nested_json_value_is_dead_lettered_like_any_unreadable_record() -> None:
    store, publisher = FakeCustomerStore(), FakePublisher()

    await make_handler(store, publisher).handle(batch(user_document(1), b"[" * 100_000 + b"]" * 100_000))

    (dead,) = publisher.dead_letters
    assert (dead.origin[2], dead.error_class, dead.attempts) == (101, "InvalidEvent", 1)
    assert causations(publisher) == [str(event_id(1))]


# --- other identity events are acknowledged and counted -------------------------------------------


async def test_another_event_type_is_skipped_without_a_customer_or_dead_letter_and_counted() -> None:
    store, publisher = FakeCustomerStore(), FakePublisher()
    before = sample("identity_events_ignored_total", event_type="UserPasswordChanged")

    await make_handler(store, publisher).handle(batch(user_document(1, eventType="UserPasswordChanged")))

    assert sample("identity_events_ignored_total", event_type="UserPasswordChanged") == before + 1
    assert store.customers == {}
    assert store.units_of_work == []
    assert publisher.published == []
    assert publisher.dead_letters == []


async def test_an_event_type_that_is_not_an_identifier_is_counted_as_other_not_by_its_value() -> None:
    store, publisher = FakeCustomerStore(), FakePublisher()
    before = sample("identity_events_ignored_total", event_type="other")

    await make_handler(store, publisher).handle(batch(user_document(1, eventType="jane.doe@example.com")))

    assert sample("identity_events_ignored_total", event_type="other") == before + 1
    assert REGISTRY.get_sample_value("identity_events_ignored_total", {"event_type": "jane.doe@example.com"}) is None
    assert publisher.dead_letters == []


async def test_event_types_outside_the_known_list_share_one_series_however_many_there_are() -> None:
    store, publisher = FakeCustomerStore(), FakePublisher()
    before = sample("identity_events_ignored_total", event_type="other")
    garbage = [user_document(n, eventType=f"Junk{n}Happened") for n in range(1, 201)]

    await make_handler(store, publisher).handle(batch(*garbage))

    assert sample("identity_events_ignored_total", event_type="other") == before + 200
    series = {
        sample.labels["event_type"]
        for metric in REGISTRY.collect()
        if metric.name == "identity_events_ignored"
        for sample in metric.samples
    }
    assert not any(label.startswith("Junk") for label in series)


# --- idempotency (AC-10) --------------------------------------------------------------------------


async def test_ac10_the_same_event_twice_in_one_batch_creates_one_customer_and_one_event() -> None:
    store, publisher = FakeCustomerStore(), FakePublisher()

    await make_handler(store, publisher).handle(batch(user_document(1), user_document(1)))

    assert len(store.customers) == 1
    assert len(store.events) == 1
    assert causations(publisher) == [str(event_id(1))]
    assert store.processed == {event_id(1): store.customer_of(user_id(1)).customer_id}
    assert publisher.dead_letters == []


async def test_ac10_the_same_event_in_a_later_batch_is_skipped_by_the_processed_cache() -> None:
    store, publisher = FakeCustomerStore(), FakePublisher()
    handler = make_handler(store, publisher)
    await handler.handle(batch(user_document(1)))
    transactions = len(store.units_of_work)
    duplicates = sample("customer_created_total", status="duplicate")

    await handler.handle(batch(user_document(1)))

    assert len(store.units_of_work) == transactions  # answered from the cache, no round trip
    assert sample("customer_created_total", status="duplicate") == duplicates + 1
    assert len(store.customers) == 1
    assert causations(publisher) == [str(event_id(1))]
    assert publisher.dead_letters == []


async def test_ac10_a_fresh_worker_does_not_republish_an_event_the_store_marked_published() -> None:
    store, publisher = FakeCustomerStore(), FakePublisher()
    await make_handler(store, publisher).handle(batch(user_document(1)))

    await make_handler(store, publisher).handle(batch(user_document(1)))  # empty cache

    assert len(store.units_of_work) == 2  # the store was asked this time
    assert len(store.customers) == 1
    assert len(publisher.published) == 1
    assert publisher.dead_letters == []


async def test_ac10_a_redelivery_republishes_the_stored_event_when_the_worker_died_before_publishing() -> None:
    store, publisher = FakeCustomerStore(), FakePublisher()
    # the first worker committed, then died before Kafka acknowledged the event
    (outcome,) = await register_customers([user_registered()], store, lambda: STORY_MOMENT)
    stored = store.event_of(store.customer_of(USER_ID).customer_id)
    assert store.published == set()

    await make_handler(store, publisher).handle([record(user_registered_document())])

    assert publisher.published == [stored]  # the same event, same eventId: not a new one
    assert outcome.event is not None and outcome.event.to_dict() == stored
    assert store.published == {UUID(stored["eventId"])}
    assert len(store.customers) == 1
    assert publisher.dead_letters == []


async def test_ac10_another_event_for_an_existing_user_creates_nothing_and_publishes_nothing() -> None:
    store, publisher = FakeCustomerStore(), FakePublisher()
    handler = make_handler(store, publisher)
    await handler.handle(batch(user_document(1)))

    await handler.handle(batch(user_document(1, eventId=str(event_id(99)))))

    customer = store.customer_of(user_id(1))
    assert len(store.customers) == 1
    assert store.processed == {event_id(1): customer.customer_id, event_id(99): customer.customer_id}
    assert len(publisher.published) == 1
    assert publisher.dead_letters == []


async def test_ac10_two_events_for_one_user_in_one_batch_create_one_customer() -> None:
    store, publisher = FakeCustomerStore(), FakePublisher()

    await make_handler(store, publisher).handle(batch(user_document(1), user_document(1, eventId=str(event_id(99)))))

    customer = store.customer_of(user_id(1))
    assert len(store.customers) == 1
    assert store.processed == {event_id(1): customer.customer_id, event_id(99): customer.customer_id}
    assert causations(publisher) == [str(event_id(1))]


# --- transient store failures are retried (AC-09) -----------------------------------------------


async def test_ac09_a_store_unavailable_on_the_first_two_commits_succeeds_on_the_third() -> None:
    store, publisher = FakeCustomerStore(), FakePublisher()
    store.failures.fail("commit", StoreUnavailable("PostgreSQL unavailable: OperationalError"), times=2)
    retries = sample("processing_attempts_total", agent="register_customer", outcome="retry")

    await make_handler(store, publisher).handle(batch(user_document(1)))

    assert sample("processing_attempts_total", agent="register_customer", outcome="retry") == retries + 2
    assert store.failures.calls["commit"] == 3
    assert [uow.rolled_back for uow in store.units_of_work] == [True, True, False]
    assert store.customer_numbers() == ["ACME-202601-000001"]  # the rolled-back numbers were returned
    assert len(store.events) == 1
    assert causations(publisher) == [str(event_id(1))]
    assert publisher.dead_letters == []


async def test_ac09_a_store_unavailable_on_every_attempt_dead_letters_every_valid_record_after_6_attempts() -> None:
    store, publisher = FakeCustomerStore(), FakePublisher()
    store.failures.always("commit", StoreUnavailable("PostgreSQL unavailable: OperationalError"))
    exhausted = sample("processing_attempts_total", agent="register_customer", outcome="exhausted")
    failed, rejected = (
        sample("customer_created_total", status="failed"),
        sample("customer_created_total", status="rejected"),
    )

    await make_handler(store, publisher).handle(batch(user_document(1), b"not json", user_document(3)))

    assert store.failures.calls["commit"] == ATTEMPTS + 2  # then each of the two alone, once
    assert sample("processing_attempts_total", agent="register_customer", outcome="exhausted") == exhausted + 1
    # the two valid records count as failed (their retries ran out), the unreadable one as rejected
    assert sample("customer_created_total", status="failed") == failed + 2
    assert sample("customer_created_total", status="rejected") == rejected + 1
    assert sorted((dead.origin[2], dead.error_class, dead.attempts) for dead in publisher.dead_letters) == [
        (100, "StoreUnavailable", ATTEMPTS),
        (101, "InvalidEvent", 1),
        (102, "StoreUnavailable", ATTEMPTS),
    ]
    assert {dead.error_message for dead in publisher.dead_letters if dead.error_class == "StoreUnavailable"} == {
        "PostgreSQL unavailable: OperationalError"
    }
    assert publisher.published == []
    assert (store.customers, store.events, store.processed, store.counters) == ({}, {}, {}, {})


async def test_after_the_last_retry_only_the_record_that_keeps_failing_is_dead_lettered_not_its_neighbours() -> None:
    store, publisher = FakeCustomerStore(), FakePublisher()
    stuck = StoreUnavailable("lock timeout")
    store.failures.always(
        "add_customers", stuck, when=lambda customers: any(c.user_id == user_id(2) for c in customers)
    )

    await make_handler(store, publisher).handle(batch(user_document(1), user_document(2), user_document(3)))

    assert [(dead.origin[2], dead.error_class, dead.attempts) for dead in publisher.dead_letters] == [
        (101, "StoreUnavailable", ATTEMPTS)
    ]
    assert sorted(causations(publisher)) == sorted([str(event_id(1)), str(event_id(3))])


async def test_after_the_last_retry_two_failures_in_a_row_send_the_rest_to_the_dlq_without_more_attempts() -> None:
    store, publisher = FakeCustomerStore(), FakePublisher()
    store.failures.always("commit", StoreUnavailable("down"))

    await make_handler(store, publisher).handle(batch(*(user_document(n) for n in range(1, 11))))

    assert store.failures.calls["commit"] == ATTEMPTS + 2
    assert len(publisher.dead_letters) == 10


async def test_a_batch_that_exhausted_its_retries_is_not_remembered_as_processed() -> None:
    store, publisher = FakeCustomerStore(), FakePublisher()
    handler = make_handler(store, publisher)
    store.failures.fail("commit", StoreUnavailable("down"), times=ATTEMPTS)
    await handler.handle(batch(user_document(1)))

    await handler.handle(batch(user_document(1)))  # replayed from the DLQ once PostgreSQL is back

    assert len(store.customers) == 1
    assert causations(publisher) == [str(event_id(1))]


# --- publishing failures --------------------------------------------------------------------------


async def test_when_kafka_never_acknowledges_the_customer_stays_committed_and_the_record_is_dead_lettered() -> None:
    store, publisher = FakeCustomerStore(), FakePublisher()
    publisher.failures.always("publish_customer_registered", PublishFailed("no acknowledgement in 30s"))
    records = batch(user_document(1))

    await make_handler(store, publisher).handle(records)

    assert publisher.failures.calls["publish_customer_registered"] == ATTEMPTS
    (dead,) = publisher.dead_letters
    assert (dead.error_class, dead.error_message, dead.attempts) == ("PublishFailed", "no acknowledgement in 30s", 6)
    assert (dead.key, dead.value, dead.origin) == (records[0].key, records[0].value, records[0].origin)
    customer = store.customer_of(user_id(1))
    assert len(store.events) == 1
    assert store.mark_published_calls == []
    assert store.published == set()  # so that a replay re-publishes it
    assert store.registration_of(customer.customer_id).published is False


async def test_a_record_dead_lettered_for_kafka_is_republished_when_replayed_to_a_fresh_worker() -> None:
    store, publisher = FakeCustomerStore(), FakePublisher()
    publisher.failures.always("publish_customer_registered", PublishFailed("no acknowledgement"))
    await make_handler(store, publisher).handle(batch(user_document(1)))
    stored = store.event_of(store.customer_of(user_id(1)).customer_id)
    publisher.failures.clear()

    await make_handler(store, publisher).handle(batch(user_document(1)))

    assert publisher.published == [stored]
    assert store.published == {UUID(stored["eventId"])}
    assert len(store.customers) == 1


async def test_a_record_dead_lettered_for_kafka_is_republished_when_replayed_to_the_same_worker() -> None:
    store, publisher = FakeCustomerStore(), FakePublisher()
    handler = make_handler(store, publisher)
    publisher.failures.always("publish_customer_registered", PublishFailed("no acknowledgement"))
    await handler.handle(batch(user_document(1)))
    publisher.failures.clear()

    await handler.handle(batch(user_document(1)))  # the DLQ replayed into the same worker

    assert causations(publisher) == [str(event_id(1))]


async def test_a_failure_to_mark_events_published_is_logged_once_and_the_batch_still_completes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # marking is an optimisation (it spares a redelivery one publish): not worth holding the batch
    store, publisher = FakeCustomerStore(), FakePublisher()
    store.failures.always("mark_published", StoreUnavailable("down"))
    caplog.set_level(logging.WARNING)

    await make_handler(store, publisher).handle(batch(user_document(1)))

    assert store.failures.calls["mark_published"] == 1
    assert causations(publisher) == [str(event_id(1))]
    assert publisher.dead_letters == []
    assert any("could not mark 1 event(s) published" in entry.getMessage() for entry in caplog.records)


async def test_a_record_that_cannot_be_read_yet_holds_back_its_partition_and_not_the_others() -> None:
    # the registry is down for one record: it and the later records of its partition are left for a
    # retry (the partition's order); the record of another partition is created in the same attempt
    store, publisher = FakeCustomerStore(), FakePublisher()
    unreadable = json.dumps(user_document(2)).encode()

    async def decode_or_fail(value: bytes | None) -> Any:
        if value == unreadable:
            raise RegistryUnavailable("schema registry unreachable")
        return await decode(value)

    handler = RegisterCustomerHandler(
        store, publisher, decode_or_fail, NO_WAIT, dead_letters=publisher, now=lambda: STORY_MOMENT
    )
    first, held, after, elsewhere = (
        Record(IDENTITY_TOPIC, 0, 10, None, json.dumps(user_document(1)).encode(), []),
        Record(IDENTITY_TOPIC, 0, 11, None, unreadable, []),
        Record(IDENTITY_TOPIC, 0, 12, None, json.dumps(user_document(3)).encode(), []),
        Record(IDENTITY_TOPIC, 1, 10, None, json.dumps(user_document(4)).encode(), []),
    )

    unfinished = await handler.attempt([first, held, after, elsewhere])

    assert unfinished is not None
    assert unfinished.records == (held, after)
    assert isinstance(unfinished.error, RegistryUnavailable)
    assert sorted(causations(publisher)) == sorted([str(event_id(1)), str(event_id(4))])
    assert publisher.dead_letters == []


async def test_a_record_whose_dead_letter_kafka_refuses_after_the_last_retry_is_dead_lettered_once_later() -> None:
    store, publisher = FakeCustomerStore(), FakePublisher()
    store.failures.always("commit", StoreUnavailable("down"))
    publisher.failures.fail("dead_letter", PublishFailed("no acknowledgement"), times=2)

    await make_handler(store, publisher).handle(batch(user_document(1)))

    assert publisher.failures.calls["dead_letter"] == 3
    (dead,) = publisher.dead_letters
    assert (dead.error_class, dead.attempts) == ("StoreUnavailable", ATTEMPTS)


async def test_a_dead_letter_that_kafka_refuses_at_first_is_retried() -> None:
    store, publisher = FakeCustomerStore(), FakePublisher()
    publisher.failures.fail("dead_letter", PublishFailed("no acknowledgement"), times=2)

    await make_handler(store, publisher).handle(batch(b"not json"))

    assert publisher.failures.calls["dead_letter"] == 3
    (dead,) = publisher.dead_letters
    assert (dead.error_class, dead.attempts) == ("InvalidEvent", 1)


# --- records the store refuses for good ----------------------------------------------------------


@pytest.mark.parametrize(
    ("refusal", "error_class", "message"),
    [
        (
            StoreConflict("uniqueness conflict: customers_email_key"),
            "RecordRejected",
            "uniqueness conflict: customers_email_key",
        ),
        (
            RecordRejected("PostgreSQL refused the record: DataError"),
            "RecordRejected",
            "PostgreSQL refused the record: DataError",
        ),
    ],
    ids=["conflict-that-persists-alone", "refused-data"],
)
async def test_a_record_the_store_refuses_for_good_is_dead_lettered_and_its_neighbours_are_created(
    refusal: Exception, error_class: str, message: str
) -> None:
    store, publisher = FakeCustomerStore(), FakePublisher()
    store.failures.always(
        "add_customers", refusal, when=lambda customers: any(c.user_id == user_id(2) for c in customers)
    )

    await make_handler(store, publisher).handle(batch(user_document(1), user_document(2), user_document(3)))

    (dead,) = publisher.dead_letters
    assert (dead.origin[2], dead.error_class, dead.error_message, dead.attempts) == (101, error_class, message, 1)
    assert {customer.user_id for customer in store.customers.values()} == {user_id(1), user_id(3)}
    assert store.customer_numbers() == ["ACME-202601-000001", "ACME-202601-000002"]  # no gap left behind
    assert sorted(causations(publisher)) == sorted([str(event_id(1)), str(event_id(3))])
    assert event_id(2) not in store.processed


async def test_a_conflict_raised_once_by_a_concurrent_writer_resolves_and_creates_every_customer() -> None:
    store, publisher = FakeCustomerStore(), FakePublisher()
    store.failures.fail("add_customers", StoreConflict("uniqueness conflict: customers_user_id_key"), times=1)

    await make_handler(store, publisher).handle(batch(user_document(1), user_document(2)))

    assert store.customer_numbers() == ["ACME-202601-000001", "ACME-202601-000002"]
    assert sorted(causations(publisher)) == sorted([str(event_id(1)), str(event_id(2))])
    assert publisher.dead_letters == []


# --- no PII in logs (invariant 5) -----------------------------------------------------------------

PII = ("zebulonia.quackenbush@example.com", "Zebulonia", "Quackenbush", "ottoline.prynne@example.net", "Ottoline")


async def test_no_email_or_name_appears_in_logs_at_info_or_above(caplog: pytest.LogCaptureFixture) -> None:
    store, publisher = FakeCustomerStore(), FakePublisher()
    store.failures.fail("commit", StoreUnavailable("down"), times=1)
    store.failures.always(
        "add_customers", StoreConflict("conflict"), when=lambda cs: any(c.user_id == user_id(4) for c in cs)
    )
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.INFO, logger="acme_customer")

    await make_handler(store, publisher).handle(
        batch(
            user_document(1, payload__email=PII[0], payload__firstName=PII[1], payload__lastName=PII[2]),
            user_document(2, payload__email="zebulonia.quackenbush.at.example.com", payload__firstName=PII[1]),
            user_document(3, payload__firstName=PII[1] * 6, payload__lastName=PII[2]),
            user_document(4, payload__email=PII[3], payload__firstName=PII[4]),
        )
    )

    assert len(store.customers) == 1 and len(publisher.dead_letters) == 3  # every log-writing path ran
    messages = [entry.getMessage() for entry in caplog.records if entry.levelno >= logging.INFO]
    assert any("created as ACME-202601-000001" in message for message in messages)
    assert any("rejected record" in message for message in messages)
    assert any("refused by the store" in message for message in messages)
    assert [message for message in messages if any(value.lower() in message.lower() for value in PII)] == []
    labels = [value for metric in REGISTRY.collect() for s in metric.samples for value in s.labels.values()]
    assert [value for value in labels if any(pii.lower() in value.lower() for pii in PII)] == []


# --- unexpected errors: found record by record, never a whole batch to the DLQ ---------------------


async def test_an_unexpected_error_one_record_raises_alone_dead_letters_only_that_record() -> None:
    store, publisher = FakeCustomerStore(), FakePublisher()
    poisoned = str(user_id(2))
    store.failures.always(
        "add_customers",
        RuntimeError("a bug only this record triggers"),
        when=lambda customers: any(str(customer.user_id) == poisoned for customer in customers),
    )

    await make_handler(store, publisher).handle(batch(user_document(1), user_document(2), user_document(3)))

    assert [(dead.origin[2], dead.error_class, dead.attempts) for dead in publisher.dead_letters] == [
        (101, "FailedAlone", 1)
    ]
    assert publisher.dead_letters[0].error_message == "unexpected RuntimeError when this record was tried alone"
    assert sorted(causations(publisher)) == sorted([str(event_id(1)), str(event_id(3))])
    assert len(store.customer_numbers()) == 2


async def test_an_unexpected_error_every_record_raises_is_retried_on_the_schedule_then_dead_lettered() -> None:
    store, publisher = FakeCustomerStore(), FakePublisher()
    store.failures.always("commit", RuntimeError("a bug, not a database error"))

    await make_handler(store, publisher).handle(batch(user_document(1), user_document(2), user_document(3)))

    # the batch, then records 1 and 2 alone (two in a row: no one record's), then five retries
    assert [(dead.error_class, dead.attempts) for dead in publisher.dead_letters] == [
        ("UnexplainedFailure", ATTEMPTS)
    ] * 3
    assert store.customer_numbers() == []


async def test_an_unexpected_error_that_passes_is_not_dead_lettered() -> None:
    store, publisher = FakeCustomerStore(), FakePublisher()
    store.failures.fail("commit", RuntimeError("a bug that strikes once"))

    await make_handler(store, publisher).handle(batch(user_document(1), user_document(2)))

    assert publisher.dead_letters == []
    assert sorted(causations(publisher)) == sorted([str(event_id(1)), str(event_id(2))])


async def test_a_record_the_store_refuses_is_dead_lettered_even_when_publishing_its_neighbours_fails() -> None:
    # before: the refused record was acknowledged without a dead letter when the publish failed
    store, publisher = FakeCustomerStore(), FakePublisher()
    refused_user = user_id(2)
    store.failures.always(
        "add_customers",
        RecordRejected("PostgreSQL refused the record: CheckViolation"),
        when=lambda customers: any(customer.user_id == refused_user for customer in customers),
    )
    publisher.failures.fail("publish_customer_registered", PublishFailed("no acknowledgement"), times=1)

    await make_handler(store, publisher).handle(batch(user_document(1), user_document(2)))

    assert [(dead.origin[2], dead.error_class) for dead in publisher.dead_letters] == [(101, "RecordRejected")]
    assert causations(publisher) == [str(event_id(1))]


async def test_an_unexpected_error_in_a_batch_with_an_invalid_record_dead_letters_each_record_once() -> None:
    store, publisher = FakeCustomerStore(), FakePublisher()
    poisoned = user_id(2)
    store.failures.always(
        "add_customers",
        RuntimeError("a bug only this record triggers"),
        when=lambda customers: any(customer.user_id == poisoned for customer in customers),
    )

    await make_handler(store, publisher).handle(batch(user_document(1), b"not json", user_document(2)))

    assert sorted((dead.origin[2], dead.error_class) for dead in publisher.dead_letters) == [
        (101, "InvalidEvent"),
        (102, "FailedAlone"),
    ]
    assert causations(publisher) == [str(event_id(1))]


async def test_a_record_the_decoder_fails_on_unexpectedly_is_dead_lettered_alone() -> None:
    store, publisher = FakeCustomerStore(), FakePublisher()

    async def fragile_decode(value: bytes | None) -> Any:
        if value == b"crash the codec":
            raise ZeroDivisionError("a codec bug")
        return await decode(value)

    handler = RegisterCustomerHandler(
        store, publisher, fragile_decode, NO_WAIT, dead_letters=publisher, now=lambda: STORY_MOMENT
    )
    await handler.handle(batch(user_document(1), b"crash the codec", user_document(2)))

    assert [(dead.origin[2], dead.error_class) for dead in publisher.dead_letters] == [(101, "FailedAlone")]
    assert sorted(causations(publisher)) == sorted([str(event_id(1)), str(event_id(2))])


# --- the processed-eventId cache (issue 12): written after the commit and the publish only -------


class RecordedSeen:
    """SeenEvents that records each entry with its partition (as the Faust table receives them)."""

    def __init__(self) -> None:
        self.entries: dict[object, int] = {}

    def __contains__(self, event_id: object) -> bool:
        return event_id in self.entries

    def add(self, event_id: UUID, partition: int) -> None:
        self.entries[event_id] = partition


def _with_seen(store: FakeCustomerStore, publisher: FakePublisher, seen: RecordedSeen) -> RegisterCustomerHandler:
    return dataclasses.replace(make_handler(store, publisher), seen=seen)


async def test_an_event_enters_the_cache_with_its_partition_once_committed_and_published() -> None:
    store, publisher, seen = FakeCustomerStore(), FakePublisher(), RecordedSeen()

    await _with_seen(store, publisher, seen).handle(batch(user_document(1), user_document(2)))

    assert seen.entries == {event_id(1): 3, event_id(2): 3}  # the records' partition


async def test_no_cache_entry_for_an_event_whose_transaction_did_not_commit() -> None:
    store, publisher, seen = FakeCustomerStore(), FakePublisher(), RecordedSeen()
    store.failures.always("commit", StoreUnavailable("down"))

    await _with_seen(store, publisher, seen).handle(batch(user_document(1)))

    assert seen.entries == {} and store.customers == {}


async def test_no_cache_entry_for_an_event_committed_but_not_published() -> None:
    store, publisher, seen = FakeCustomerStore(), FakePublisher(), RecordedSeen()
    publisher.failures.always("publish_customer_registered", PublishFailed("no acknowledgement"))

    await _with_seen(store, publisher, seen).handle(batch(user_document(1)))

    assert len(store.customers) == 1 and seen.entries == {}  # a redelivery must publish it


async def test_a_cached_event_is_a_duplicate_without_a_transaction() -> None:
    store, publisher, seen = FakeCustomerStore(), FakePublisher(), RecordedSeen()
    seen.entries[event_id(1)] = 3  # recovered from the table after a restart
    duplicates = sample("customer_created_total", status="duplicate")
    hits = sample("processed_cache_hits_total")
    transactions = sample("processing_attempts_total", agent="register_customer", outcome="ok")

    await _with_seen(store, publisher, seen).handle(batch(user_document(1)))

    assert sample("customer_created_total", status="duplicate") == duplicates + 1
    assert sample("processed_cache_hits_total") == hits + 1
    assert sample("processing_attempts_total", agent="register_customer", outcome="ok") == transactions
    assert store.customers == {} and publisher.published == []
