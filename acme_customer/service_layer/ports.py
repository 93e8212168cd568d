"""The ports the use cases talk to; adapters implement them, tests may fake them."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from uuid import UUID

from opentelemetry.context import Context

from acme_customer.domain.customer import Customer
from acme_customer.domain.events import CustomerRegistered


@dataclass(frozen=True)
class StoredRegistration:
    """A customer's CustomerRegistered event as the event store holds it."""

    customer_id: UUID
    event: CustomerRegistered
    published: bool


@dataclass(frozen=True)
class KnownRegistrations:
    """What the store already holds for a batch's inputs."""

    by_event_id: dict[UUID, StoredRegistration]  # inputs already processed: input eventId -> registration
    by_user_id: dict[UUID, StoredRegistration]  # customers that already exist: userId -> registration


class CustomerUnitOfWork(abc.ABC):
    """One PostgreSQL transaction: rolled back unless ``commit`` is called.

    A write the store refuses (StoreConflict, RecordRejected) raises at the write or, at the
    latest, at ``commit``; either way nothing of the unit of work is stored.
    """

    async def __aenter__(self) -> CustomerUnitOfWork:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.rollback()

    @abc.abstractmethod
    async def known_registrations(self, event_ids: Sequence[UUID], user_ids: Sequence[UUID]) -> KnownRegistrations:
        """The registrations these input eventIds led to, and those of these users' existing customers.

        One question, so that a store can answer both lookups in one round trip.
        """

    @abc.abstractmethod
    async def reserve_customer_numbers(self, year_month: str, count: int) -> int:
        """Advance the month's counter by ``count`` (locking it) and return its new value."""

    @abc.abstractmethod
    async def add_customers(self, customers: Sequence[Customer]) -> None:
        """Insert customers and their preferences."""

    @abc.abstractmethod
    async def append_events(self, events: Sequence[CustomerRegistered]) -> None:
        """Append events to the event store (version 1 of each customer)."""

    @abc.abstractmethod
    async def mark_processed(self, processed: Sequence[tuple[UUID, UUID]]) -> None:
        """Record (input eventId, customerId) pairs: the idempotency guard."""

    @abc.abstractmethod
    async def commit(self) -> None: ...

    @abc.abstractmethod
    async def rollback(self) -> None: ...


class CustomerStore(abc.ABC):
    """Opens units of work and records what was published."""

    @abc.abstractmethod
    def unit_of_work(self) -> CustomerUnitOfWork: ...

    @abc.abstractmethod
    async def mark_published(self, event_ids: Sequence[UUID]) -> None:
        """Note that Kafka acknowledged these events (so redeliveries need not re-publish them)."""

    @abc.abstractmethod
    async def ping(self) -> bool:
        """Whether the store answers now (readiness; cheap, never raises)."""


class EventPublisher(abc.ABC):
    """Publishes CustomerRegistered events and waits until they are safe (Kafka acknowledged them)."""

    @abc.abstractmethod
    async def publish_customer_registered(
        self, events: Sequence[CustomerRegistered], trace_of: Mapping[UUID, Context] | None = None
    ) -> None:
        """Publish ``events`` and wait for Kafka; ``trace_of`` (by eventId): the trace each event's record continues."""
