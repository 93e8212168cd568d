"""The projection flow at the stream edge, over fakes: CustomerRegistered records to the read model."""

from __future__ import annotations

import asyncio
import logging

import pytest

from acme_customer.domain.customer import Customer
from acme_customer.errors import (
    PublishFailed,
    ReadModelConflict,
    ReadModelUnavailable,
    ReadModelUnreachable,
    StoreUnavailable,
)
from acme_customer.stream.project_customer import CustomerEventProjector
from tests.unit.fakes import FakeProfiles, FakePublisher, FakeReadModel
from tests.unit.stream_builders import (
    ATTEMPTS,
    CUSTOMER_TOPIC,
    customer_records,
    decode_customer_events,
    make_projector,
    registered,
    sample,
    user_id,
)

# --- CustomerEventProjector -----------------------------------------------------------------------


async def test_ac05_each_customer_registered_is_projected_as_its_version_1_read_model() -> None:
    (first, first_event), (second, second_event) = registered(1), registered(2)
    read_model = FakeReadModel()

    await make_projector(FakeProfiles([first, second]), read_model).handle(
        customer_records(first_event.to_dict(), second_event.to_dict())
    )

    assert read_model.documents == {
        str(first.customer_id): first.to_read_model(1),
        str(second.customer_id): second.to_read_model(1),
    }
    assert read_model.upserts == [[first.to_read_model(1), second.to_read_model(1)]]


async def test_the_same_customer_registered_twice_is_projected_once() -> None:
    customer, event = registered(1)
    read_model = FakeReadModel()

    await make_projector(FakeProfiles([customer]), read_model).handle(
        customer_records(event.to_dict(), event.to_dict())
    )

    assert read_model.upserts == [[customer.to_read_model(1)]]


async def test_a_read_model_unavailable_twice_is_retried_and_written_once() -> None:
    customer, event = registered(1)
    read_model = FakeReadModel()
    read_model.failures.fail("upsert", ReadModelUnavailable("MongoDB unavailable: AutoReconnect"), times=2)

    await make_projector(FakeProfiles([customer]), read_model).handle(customer_records(event.to_dict()))

    assert read_model.failures.calls["upsert"] == 3
    assert read_model.upserts == [[customer.to_read_model(1)]]
    assert read_model.documents == {str(customer.customer_id): customer.to_read_model(1)}


async def test_the_projector_keeps_trying_past_one_round_of_retries_since_nothing_may_be_skipped() -> None:
    customer, event = registered(1)
    read_model = FakeReadModel()
    read_model.failures.fail("upsert", ReadModelUnavailable("down"), times=ATTEMPTS + 2)

    await make_projector(FakeProfiles([customer]), read_model).handle(customer_records(event.to_dict()))

    assert read_model.failures.calls["upsert"] == ATTEMPTS + 3
    assert read_model.documents == {str(customer.customer_id): customer.to_read_model(1)}


def slow_step_projector(customer: Customer, read_model: FakeReadModel) -> CustomerEventProjector:
    return CustomerEventProjector(
        source=FakeProfiles([customer]),
        read_model=read_model,
        publisher=FakePublisher(),
        decode=decode_customer_events,
        backoff=(60.0,),
        probe_interval=0.01,
    )  # a 60 s step: a test that ends in time did not sleep it out


async def test_after_an_outage_the_projector_retries_when_the_read_model_answers_not_after_the_whole_step() -> None:
    # AC-05: a 60 s backoff step would leave the read model behind for a minute after MongoDB returns
    customer, event = registered(1)
    read_model = FakeReadModel()
    read_model.failures.fail("upsert", ReadModelUnavailable("down"), times=1)
    read_model.failures.fail("ping", ReadModelUnavailable("down"), times=3)  # back at the third probe

    await asyncio.wait_for(slow_step_projector(customer, read_model).handle(customer_records(event.to_dict())), 10)

    assert read_model.failures.calls["ping"] == 4
    assert read_model.documents == {str(customer.customer_id): customer.to_read_model(1)}


async def test_an_attempt_that_found_mongodb_down_just_before_it_returned_retries_without_the_whole_step() -> None:
    # the race CI hit: the attempt fails unreachable, MongoDB is back before the wait's first ping
    customer, event = registered(1)
    read_model = FakeReadModel()
    read_model.failures.fail("upsert", ReadModelUnreachable("MongoDB unavailable: AutoReconnect"), times=1)

    await asyncio.wait_for(slow_step_projector(customer, read_model).handle(customer_records(event.to_dict())), 10)

    assert read_model.failures.calls["upsert"] == 2
    assert read_model.documents == {str(customer.customer_id): customer.to_read_model(1)}


async def test_a_read_model_that_answers_but_fails_gets_the_whole_backoff_step() -> None:
    customer, event = registered(1)
    read_model = FakeReadModel()
    read_model.failures.fail("upsert", ReadModelUnavailable("MongoDB error: OperationFailure"), times=1)

    with pytest.raises(TimeoutError):  # still inside the 60 s step
        await asyncio.wait_for(slow_step_projector(customer, read_model).handle(customer_records(event.to_dict())), 0.5)

    assert read_model.failures.calls["upsert"] == 1
    assert read_model.failures.calls["ping"] == 1
    assert read_model.documents == {}


async def test_a_command_store_unavailable_while_projecting_is_retried() -> None:
    customer, event = registered(1)
    profiles, read_model = FakeProfiles([customer]), FakeReadModel()
    profiles.failures.fail("customers", StoreUnavailable("down"), times=1)

    await make_projector(profiles, read_model).handle(customer_records(event.to_dict()))

    assert profiles.failures.calls["customers"] == 2
    assert read_model.documents == {str(customer.customer_id): customer.to_read_model(1)}


async def test_a_read_model_conflict_goes_to_the_customer_events_dlq_not_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    customer, event = registered(1)
    read_model, publisher = FakeReadModel(), FakePublisher()
    read_model.failures.always("upsert", ReadModelConflict("customer x: another document holds its userId"))
    caplog.set_level(logging.ERROR)
    conflicts = sample("events_dead_lettered_total", error_class="ReadModelConflict")

    await make_projector(FakeProfiles([customer]), read_model, publisher).handle(customer_records(event.to_dict()))

    assert read_model.failures.calls["upsert"] == 1  # not retried
    assert read_model.documents == {}
    assert [(dead.origin, dead.error_class, dead.attempts) for dead in publisher.dead_letters] == [
        ((CUSTOMER_TOPIC, 3, 0), "ReadModelConflict", 1)
    ]
    assert sample("events_dead_lettered_total", error_class="ReadModelConflict") == conflicts + 1
    assert any("read model refused a projection" in entry.getMessage() for entry in caplog.records)


async def test_a_conflict_in_a_batch_dead_letters_only_its_own_record_and_projects_the_others() -> None:
    (first, first_event), (second, second_event), (third, third_event) = registered(1), registered(2), registered(3)
    read_model, publisher = FakeReadModel(), FakePublisher()
    conflicting = str(second.customer_id)
    read_model.failures.always(
        "upsert",
        ReadModelConflict(f"customer {conflicting}: another document holds its userId"),
        when=lambda documents: any(document["_id"] == conflicting for document in documents),
    )

    await make_projector(FakeProfiles([first, second, third]), read_model, publisher).handle(
        customer_records(first_event.to_dict(), second_event.to_dict(), third_event.to_dict())
    )

    assert set(read_model.documents) == {str(first.customer_id), str(third.customer_id)}
    assert [(dead.origin[2], dead.error_class) for dead in publisher.dead_letters] == [(1, "ReadModelConflict")]


async def test_undecodable_records_on_customer_events_go_to_its_dlq_and_their_neighbours_are_projected() -> None:
    customer, event = registered(1)
    read_model, publisher = FakeReadModel(), FakePublisher()
    before = sample("events_dead_lettered_total", error_class="InvalidEvent")

    await make_projector(FakeProfiles([customer]), read_model, publisher).handle(
        customer_records(b"not json", b"\x00\x00\x00\x00\x01avro", None, [1, 2], event.to_dict())
    )

    assert read_model.documents == {str(customer.customer_id): customer.to_read_model(1)}
    assert [(dead.origin, dead.error_class) for dead in publisher.dead_letters] == [
        ((CUSTOMER_TOPIC, 3, offset), "InvalidEvent") for offset in range(4)
    ]
    assert [dead.value for dead in publisher.dead_letters][:1] == [b"not json"]  # the original bytes
    assert sample("events_dead_lettered_total", error_class="InvalidEvent") == before + 4


async def test_other_customer_event_types_are_skipped_and_counted_without_a_dead_letter() -> None:
    profiles, read_model, publisher = FakeProfiles(), FakeReadModel(), FakePublisher()
    known = sample("customer_events_ignored_total", event_type="CustomerDeleted")
    other = sample("customer_events_ignored_total", event_type="other")

    await make_projector(profiles, read_model, publisher).handle(
        customer_records(
            {"eventType": "CustomerDeleted", "aggregateId": str(user_id(1))},
            {"eventType": "jane@example.com", "aggregateId": str(user_id(2))},
        )
    )

    assert profiles.failures.calls["customers"] == 0
    assert read_model.failures.calls["upsert"] == 0
    assert publisher.dead_letters == []
    assert sample("customer_events_ignored_total", event_type="CustomerDeleted") == known + 1
    assert sample("customer_events_ignored_total", event_type="other") == other + 1


async def test_a_customer_registered_without_a_valid_aggregate_id_is_dead_lettered_and_its_neighbours_projected() -> (
    None
):
    customer, event = registered(1)
    read_model, publisher = FakeReadModel(), FakePublisher()
    malformed = {**event.to_dict(), "aggregateId": "not-a-uuid"}

    await make_projector(FakeProfiles([customer]), read_model, publisher).handle(
        customer_records(malformed, event.to_dict())
    )

    assert read_model.documents == {str(customer.customer_id): customer.to_read_model(1)}
    assert [(dead.origin[2], dead.error_class, dead.error_message) for dead in publisher.dead_letters] == [
        (0, "InvalidEvent", "aggregateId: missing or not a UUID")
    ]


async def test_a_customer_registered_for_a_customer_the_command_store_lacks_is_dead_lettered() -> None:
    (known, known_event), (_, stray_event) = registered(1), registered(2)
    read_model, publisher = FakeReadModel(), FakePublisher()

    await make_projector(FakeProfiles([known]), read_model, publisher).handle(
        customer_records(stray_event.to_dict(), known_event.to_dict())
    )

    assert set(read_model.documents) == {str(known.customer_id)}
    assert [(dead.origin[2], dead.error_class) for dead in publisher.dead_letters] == [(0, "UnknownCustomer")]


async def test_a_dead_letter_kafka_refuses_keeps_the_projector_record_unfinished() -> None:
    publisher = FakePublisher()
    publisher.failures.fail("dead_letter", PublishFailed("no acknowledgement"), times=2)

    await make_projector(FakeProfiles(), FakeReadModel(), publisher).handle(customer_records(b"not json"))

    assert publisher.failures.calls["dead_letter"] == 3
    assert [dead.error_class for dead in publisher.dead_letters] == ["InvalidEvent"]


async def test_an_unexpected_projection_error_of_one_record_dead_letters_it_and_projects_the_rest() -> None:
    (first, first_event), (second, second_event) = registered(1), registered(2)
    profiles, read_model, publisher = FakeProfiles([first, second]), FakeReadModel(), FakePublisher()
    profiles.failures.always("customers", RuntimeError("a bug"), when=lambda ids: second.customer_id in ids)

    await make_projector(profiles, read_model, publisher).handle(
        customer_records(first_event.to_dict(), second_event.to_dict())
    )

    assert set(read_model.documents) == {str(first.customer_id)}
    assert [(dead.origin[2], dead.error_class) for dead in publisher.dead_letters] == [(1, "FailedAlone")]


async def test_an_unexplained_projection_failure_is_dead_lettered_after_the_schedule_not_retried_for_ever() -> None:
    customer, event = registered(1)
    profiles, read_model, publisher = FakeProfiles([customer]), FakeReadModel(), FakePublisher()
    profiles.failures.always("customers", RuntimeError("a bug"))

    await make_projector(profiles, read_model, publisher).handle(customer_records(event.to_dict()))

    assert profiles.failures.calls["customers"] == ATTEMPTS
    assert [(dead.error_class, dead.attempts) for dead in publisher.dead_letters] == [("UnexplainedFailure", ATTEMPTS)]
