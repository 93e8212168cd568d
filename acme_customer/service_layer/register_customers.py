"""Use case: register customers from ``UserRegistered`` events (US-0002-03): their profiles, numbers and events.

A batch is written in one transaction: one counter update per month, then the customers,
their preferences, their CustomerRegistered events and the processed input eventIds.
A record that a constraint refuses is redone alone so that its neighbours still commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from opentelemetry import trace
from opentelemetry.context import Context

from acme_customer.domain.customer import register_customer
from acme_customer.domain.customer_number import allocate, year_month_of
from acme_customer.domain.events import CustomerRegistered, UserRegistered
from acme_customer.errors import PermanentError, RecordRejected, StoreConflict, TransientError
from acme_customer.service_layer.ports import (
    CustomerStore,
    CustomerUnitOfWork,
    EventPublisher,
    StoredRegistration,
)

tracer = trace.get_tracer("acme_customer")
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What became of one input event."""

    input_event_id: UUID
    customer_id: UUID | None = None
    event: CustomerRegistered | None = None  # the CustomerRegistered event (new or stored)
    created: bool = False  # a new customer was written by this call
    publish: bool = False  # the event still has to reach customer.events
    error: PermanentError | None = None  # set when the record is refused for good


async def register_customers(
    users: Sequence[UserRegistered], store: CustomerStore, now: Callable[[], datetime]
) -> list[Outcome]:
    """Create a customer for every new user; duplicates resolve to the existing customer."""
    with tracer.start_as_current_span("create_customer_profile") as span:
        span.set_attribute("batch.size", len(users))
        try:
            return await _in_one_transaction(users, store, now)
        except (StoreConflict, PermanentError):
            if len(users) == 1:
                return [await _alone(users[0], store, now)]
        # isolate the record that failed: each one in its own transaction
        return [await _alone(user, store, now) for user in users]


async def _alone(user: UserRegistered, store: CustomerStore, now: Callable[[], datetime]) -> Outcome:
    try:
        try:
            return (await _in_one_transaction([user], store, now))[0]
        except StoreConflict:
            # a concurrent writer committed the same user or event first: now it is a duplicate
            return (await _in_one_transaction([user], store, now))[0]
    except StoreConflict as conflict:
        # the conflict persists with the record alone: the stored data disagrees with it
        return Outcome(input_event_id=user.event_id, error=RecordRejected(str(conflict)))
    except PermanentError as error:
        return Outcome(input_event_id=user.event_id, error=error)


async def _in_one_transaction(
    users: Sequence[UserRegistered], store: CustomerStore, now: Callable[[], datetime]
) -> list[Outcome]:
    async with store.unit_of_work() as uow:
        stored = await uow.known_registrations(
            [user.event_id for user in users], list(dict.fromkeys(user.user_id for user in users))
        )
        by_event, by_user = dict(stored.by_event_id), stored.by_user_id
        outcomes: dict[int, Outcome] = {}
        to_publish: set[UUID] = set()  # CustomerRegistered eventIds already scheduled in this batch
        newcomers: dict[UUID, int] = {}  # userId -> index of the first event that registers it
        processed: list[tuple[UUID, UUID]] = []
        for index, user in enumerate(users):
            known = by_event.get(user.event_id) or by_user.get(user.user_id)
            if known is not None:
                outcomes[index] = _existing(user, known, to_publish)
                if user.event_id not in by_event:
                    processed.append((user.event_id, known.customer_id))
                    by_event[user.event_id] = known
            elif user.user_id not in newcomers:
                newcomers[user.user_id] = index
        created = await _register(uow, [(index, users[index]) for index in newcomers.values()], now)
        for index, user in enumerate(users):
            if index in outcomes:
                continue
            first = newcomers[user.user_id]
            if index == first:
                outcomes[index] = created[index]
                processed.append((user.event_id, _customer_id(created[index])))
            else:  # the same user again within the batch: nothing new, nothing more to publish
                outcomes[index] = Outcome(user.event_id, created[first].customer_id, created[first].event)
                if user.event_id != users[first].event_id:
                    processed.append((user.event_id, _customer_id(created[first])))
        await uow.mark_processed(list(dict(processed).items()))
        await uow.commit()
    return [outcomes[index] for index in range(len(users))]


def _customer_id(outcome: Outcome) -> UUID:
    assert outcome.customer_id is not None
    return outcome.customer_id


def _existing(user: UserRegistered, known: StoredRegistration, to_publish: set[UUID]) -> Outcome:
    event_id = known.event.event_id
    # re-publish a stored event that Kafka never acknowledged (the worker died after commit)
    publish = not known.published and event_id not in to_publish
    if publish:
        to_publish.add(event_id)
    return Outcome(user.event_id, known.customer_id, known.event, created=False, publish=publish)


async def _register(
    uow: CustomerUnitOfWork, newcomers: list[tuple[int, UserRegistered]], now: Callable[[], datetime]
) -> dict[int, Outcome]:
    by_month: dict[str, list[tuple[int, UserRegistered]]] = {}
    for index, user in newcomers:
        by_month.setdefault(year_month_of(user.registered_at), []).append((index, user))
    registrations = []
    outcomes: dict[int, Outcome] = {}
    # months in a fixed order, so that two workers never wait on each other's counters
    for year_month in sorted(by_month):
        users = by_month[year_month]
        with tracer.start_as_current_span("generate_customer_number") as span:
            span.set_attribute("customer_number.year_month", year_month)
            span.set_attribute("customer_number.count", len(users))
            last = await uow.reserve_customer_numbers(year_month, len(users))
        numbers = allocate(year_month, last - len(users), len(users))
        for (index, user), number in zip(users, numbers, strict=True):
            customer, event = register_customer(user, number, now())
            registrations.append((customer, event))
            outcomes[index] = Outcome(user.event_id, customer.customer_id, event, created=True, publish=True)
    if registrations:
        await uow.add_customers([customer for customer, _ in registrations])
        await uow.append_events([event for _, event in registrations])
    return outcomes


async def publish_registrations(
    outcomes: Sequence[Outcome],
    publisher: EventPublisher,
    store: CustomerStore,
    trace_of_input: Mapping[UUID, Context] | None = None,
) -> None:
    """Publish the CustomerRegistered events the outcomes ask for, wait for Kafka, then note them published.

    ``trace_of_input`` (by UserRegistered eventId) is the trace each input came with: its
    CustomerRegistered continues it. Raises the publisher's TransientError when Kafka did not
    take them: the customers stay committed and their events unpublished, so the next attempt
    publishes the stored events.
    """
    to_publish = [
        (outcome.input_event_id, outcome.event) for outcome in outcomes if outcome.publish and outcome.event is not None
    ]
    traces = trace_of_input or {}
    trace_of = {event.event_id: traces[input_id] for input_id, event in to_publish if input_id in traces}
    await publish_events([event for _, event in to_publish], publisher, store, trace_of)


async def publish_events(
    events: Sequence[CustomerRegistered],
    publisher: EventPublisher,
    store: CustomerStore,
    trace_of: Mapping[UUID, Context] | None = None,
) -> None:
    """Publish CustomerRegistered events (new, or as stored), wait for Kafka, then note them published.

    ``trace_of`` (by CustomerRegistered eventId): the trace each continues, when known.
    """
    if not events:
        return
    await publisher.publish_customer_registered(events, trace_of or {})
    event_ids = [event.event_id for event in events]
    try:
        await store.mark_published(event_ids)
    except TransientError as error:
        # harmless: a redelivery would publish them again, with the same eventIds
        logger.warning("could not mark %d event(s) published: %s", len(event_ids), error)
