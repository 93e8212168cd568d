"""The unit of work's contract, written once and run against the fake and the PostgreSQL adapter.

A subclass provides the ``store`` fixture (a ``CustomerStore``). The same behaviour is then
asserted of both, so a fake cannot drift from what PostgreSQL does (pyeventsourcing's
``tests/persistence.py`` does this per recorder).

A write the store refuses raises at the write itself (the fake) or, at the latest, at the
commit (PostgreSQL in pipeline mode sends the inserts with the COMMIT): the contract asks
for the error by the end of the unit of work, and for nothing to be stored.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime
from uuid import UUID

import pytest

from acme_customer.domain.customer import Customer, register_customer
from acme_customer.domain.customer_number import CustomerNumber
from acme_customer.domain.events import CustomerRegistered, UserRegistered
from acme_customer.errors import RecordRejected, StoreConflict
from acme_customer.service_layer.ports import CustomerStore, KnownRegistrations

MOMENT = datetime(2026, 1, 2, 10, 30, tzinfo=UTC)


def fresh_month() -> str:
    """A YYYYMM no other test uses (the real store's database is shared by a module's tests)."""
    return f"{2100 + uuid.uuid4().int % 7800}{1 + uuid.uuid4().int % 12:02d}"


def registration(year_month: str, sequence: int, user_id: UUID | None = None) -> tuple[Customer, CustomerRegistered]:
    user = UserRegistered(
        event_id=uuid.uuid4(),
        timestamp=MOMENT,
        correlation_id=uuid.uuid4(),
        causation_id=None,
        user_id=user_id or uuid.uuid4(),
        email=f"contract-{uuid.uuid4().hex[:10]}@example.com",
        first_name="Jane",
        last_name="Doe",
        marketing_opt_in=False,
        registered_at=MOMENT,
    )
    return register_customer(user, CustomerNumber(year_month, sequence), MOMENT)


async def commit_registration(store: CustomerStore, customer: Customer, event: CustomerRegistered) -> UUID:
    """Write a customer, its event and a processed input eventId in one committed unit of work."""
    input_event_id = uuid.uuid4()
    async with store.unit_of_work() as uow:
        await uow.add_customers([customer])
        await uow.append_events([event])
        await uow.mark_processed([(input_event_id, customer.customer_id)])
        await uow.commit()
    return input_event_id


class UnitOfWorkContract:
    """What every ``CustomerUnitOfWork`` does; subclasses give the ``store`` fixture."""

    async def test_committed_work_is_found_by_user_id_and_by_processed_event_id(self, store: CustomerStore) -> None:
        customer, event = registration(fresh_month(), 1)
        input_event_id = await commit_registration(store, customer, event)

        async with store.unit_of_work() as uow:
            known = await uow.known_registrations([input_event_id, uuid.uuid4()], [customer.user_id, uuid.uuid4()])
            by_user, by_event = known.by_user_id, known.by_event_id

        assert set(by_user) == {customer.user_id}
        assert set(by_event) == {input_event_id}
        for found in (by_user[customer.user_id], by_event[input_event_id]):
            assert found.customer_id == customer.customer_id
            assert found.event == event
            assert found.published is False

    async def test_rolls_back_uncommitted_work_by_default(self, store: CustomerStore) -> None:
        year_month = fresh_month()
        customer, event = registration(year_month, 1)
        async with store.unit_of_work() as uow:
            await uow.reserve_customer_numbers(year_month, 1)
            await uow.add_customers([customer])
            await uow.append_events([event])

        async with store.unit_of_work() as uow:
            assert await uow.known_registrations([], [customer.user_id]) == KnownRegistrations({}, {})
            assert await uow.reserve_customer_numbers(year_month, 1) == 1  # the number came back

    async def test_reserving_numbers_counts_on_from_the_last_committed_reservation(self, store: CustomerStore) -> None:
        year_month = fresh_month()
        async with store.unit_of_work() as uow:
            assert await uow.reserve_customer_numbers(year_month, 3) == 3
            await uow.commit()
        async with store.unit_of_work() as uow:
            assert await uow.reserve_customer_numbers(year_month, 2) == 5
            assert await uow.reserve_customer_numbers(fresh_month(), 1) == 1  # each month its own

    async def test_a_second_customer_for_the_same_user_is_a_conflict(self, store: CustomerStore) -> None:
        year_month = fresh_month()
        customer, event = registration(year_month, 1)
        await commit_registration(store, customer, event)
        again, _ = registration(year_month, 2, user_id=customer.user_id)

        async with store.unit_of_work() as uow:
            with pytest.raises(StoreConflict):
                await uow.add_customers([again])
                await uow.commit()  # a refusal comes at the write or, at the latest, here

    async def test_a_customer_number_already_held_is_a_conflict(self, store: CustomerStore) -> None:
        year_month = fresh_month()
        customer, event = registration(year_month, 1)
        await commit_registration(store, customer, event)
        other, _ = registration(year_month, 1)

        async with store.unit_of_work() as uow:
            with pytest.raises(StoreConflict):
                await uow.add_customers([other])
                await uow.commit()  # a refusal comes at the write or, at the latest, here

    async def test_an_event_id_already_stored_is_a_conflict(self, store: CustomerStore) -> None:
        customer, event = registration(fresh_month(), 1)
        await commit_registration(store, customer, event)

        async with store.unit_of_work() as uow:
            with pytest.raises(StoreConflict):
                await uow.append_events([event])
                await uow.commit()  # a refusal comes at the write or, at the latest, here

    async def test_a_second_registration_event_for_one_customer_is_a_conflict(self, store: CustomerStore) -> None:
        customer, event = registration(fresh_month(), 1)
        await commit_registration(store, customer, event)
        second = dataclasses.replace(event, event_id=uuid.uuid4())

        async with store.unit_of_work() as uow:
            with pytest.raises(StoreConflict):  # (aggregate_id, aggregate_version) is unique
                await uow.append_events([second])
                await uow.commit()  # a refusal comes at the write or, at the latest, here

    async def test_an_input_event_processed_twice_is_a_conflict(self, store: CustomerStore) -> None:
        customer, event = registration(fresh_month(), 1)
        input_event_id = await commit_registration(store, customer, event)

        async with store.unit_of_work() as uow:
            with pytest.raises(StoreConflict):
                await uow.mark_processed([(input_event_id, customer.customer_id)])
                await uow.commit()  # a refusal comes at the write or, at the latest, here

    async def test_a_processed_event_must_point_to_an_existing_customer(self, store: CustomerStore) -> None:
        async with store.unit_of_work() as uow:
            with pytest.raises(RecordRejected):
                await uow.mark_processed([(uuid.uuid4(), uuid.uuid4())])
                await uow.commit()  # a refusal comes at the write or, at the latest, here

    async def test_a_reachable_store_answers_a_ping(self, store: CustomerStore) -> None:
        assert await store.ping() is True

    async def test_marking_events_published_shows_in_later_reads(self, store: CustomerStore) -> None:
        customer, event = registration(fresh_month(), 1)
        await commit_registration(store, customer, event)

        await store.mark_published([event.event_id, uuid.uuid4()])  # an unknown id is ignored

        async with store.unit_of_work() as uow:
            (found,) = (await uow.known_registrations([], [customer.user_id])).by_user_id.values()
        assert found.published is True
