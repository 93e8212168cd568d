"""In-memory fakes of the service layer's ports (cosmicpython style: subclasses of the real ABCs).

Each fake keeps its state in plain dicts and lists the tests can read, and has a ``failures``
plan to raise an error from one operation at an exact moment (the first N calls, every call,
or only the calls a predicate picks).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from opentelemetry.context import Context

from acme_customer.domain.customer import Customer
from acme_customer.domain.events import CustomerRegistered
from acme_customer.errors import ReadModelConflict, RecordRejected, StoreConflict
from acme_customer.service_layer.ports import (
    CustomerStore,
    CustomerUnitOfWork,
    EventPublisher,
    KnownRegistrations,
    StoredRegistration,
)
from acme_customer.service_layer.project_customers import ProfileSource, ReadModel

ErrorFactory = Callable[[], BaseException]
Envelope = dict[str, Any]  # an event's wire form


@dataclass
class _Injection:
    make_error: ErrorFactory
    remaining: int | None  # None: every matching call
    when: Callable[..., bool] | None


class FailurePlan:
    """Errors to raise from named operations; every call is counted in ``calls``."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.raised: Counter[str] = Counter()
        self._injections: dict[str, list[_Injection]] = {}

    def fail(
        self,
        operation: str,
        error: BaseException | type[BaseException] | ErrorFactory,
        times: int | None = 1,
        when: Callable[..., bool] | None = None,
    ) -> None:
        """Raise ``error`` from the next ``times`` calls of ``operation`` (None: every call) that ``when`` accepts."""
        self._injections.setdefault(operation, []).append(_Injection(_factory(error), times, when))

    def always(
        self,
        operation: str,
        error: BaseException | type[BaseException] | ErrorFactory,
        when: Callable[..., bool] | None = None,
    ) -> None:
        self.fail(operation, error, times=None, when=when)

    def clear(self) -> None:
        self._injections.clear()

    def answers(self, operation: str) -> bool:
        """For a probe that never raises (``ping``): False where an error is planned for this call."""
        try:
            self.check(operation)
        except Exception:
            return False
        return True

    def check(self, operation: str, *args: Any) -> None:
        """Called by the fakes at the start of each operation."""
        self.calls[operation] += 1
        for injection in self._injections.get(operation, []):
            if injection.remaining == 0:
                continue
            if injection.when is not None and not injection.when(*args):
                continue
            if injection.remaining is not None:
                injection.remaining -= 1
            self.raised[operation] += 1
            raise injection.make_error()


def _factory(error: BaseException | type[BaseException] | ErrorFactory) -> ErrorFactory:
    if isinstance(error, BaseException):
        # a fresh instance per raise, so tracebacks and causes do not pile up on one object
        return lambda: type(error)(*error.args)
    return error


# --- the command store ------------------------------------------------------------------------


class FakeCustomerStore(CustomerStore):
    """The committed state of the command store; units of work stage writes until commit.

    Uniqueness is enforced as PostgreSQL would (customers.user_id, customers.customer_number,
    event_store.event_id, processed_events.event_id), raising StoreConflict from the write.
    """

    def __init__(self) -> None:
        self.customers: dict[UUID, Customer] = {}  # customerId -> customer
        self.events: dict[UUID, Envelope] = {}  # CustomerRegistered eventId -> envelope
        self.published: set[UUID] = set()  # CustomerRegistered eventIds Kafka acknowledged
        self.processed: dict[UUID, UUID] = {}  # input eventId -> customerId
        self.counters: dict[str, int] = {}  # YYYYMM -> last customer number handed out
        self.mark_published_calls: list[list[UUID]] = []
        self.units_of_work: list[FakeUnitOfWork] = []
        self.failures = FailurePlan()  # operations: the UoW's method names and "mark_published"

    def unit_of_work(self) -> FakeUnitOfWork:
        uow = FakeUnitOfWork(self)
        self.units_of_work.append(uow)
        return uow

    async def ping(self) -> bool:
        return self.failures.answers("ping")

    async def mark_published(self, event_ids: Sequence[UUID]) -> None:
        self.failures.check("mark_published", list(event_ids))
        self.mark_published_calls.append(list(event_ids))
        self.published.update(event_id for event_id in event_ids if event_id in self.events)

    # --- helpers for tests ---

    @property
    def commits(self) -> int:
        return sum(1 for uow in self.units_of_work if uow.committed)

    def customer_of(self, user_id: UUID) -> Customer:
        (customer,) = [customer for customer in self.customers.values() if customer.user_id == user_id]
        return customer

    def customer_numbers(self) -> list[str]:
        return sorted(str(customer.customer_number) for customer in self.customers.values())

    def event_of(self, customer_id: UUID) -> Envelope:
        (envelope,) = [envelope for envelope in self.events.values() if envelope["aggregateId"] == str(customer_id)]
        return envelope

    def registration_of(self, customer_id: UUID) -> StoredRegistration:
        envelope = self.event_of(customer_id)
        return StoredRegistration(customer_id, envelope, UUID(envelope["eventId"]) in self.published)


class FakeUnitOfWork(CustomerUnitOfWork):
    """One transaction: reads see committed state plus its own writes; ``commit`` applies them."""

    def __init__(self, store: FakeCustomerStore) -> None:
        self.store = store
        self.committed = False
        self.rolled_back = False
        self._customers: dict[UUID, Customer] = {}
        self._events: dict[UUID, Envelope] = {}
        self._processed: dict[UUID, UUID] = {}
        self._counters: dict[str, int] = {}

    def _check(self, operation: str, *args: Any) -> None:
        assert not self.committed and not self.rolled_back, f"{operation} on a finished unit of work"
        self.store.failures.check(operation, *args)

    def _all_customers(self) -> list[Customer]:
        return [*self.store.customers.values(), *self._customers.values()]

    def _all_events(self) -> dict[UUID, Envelope]:
        return {**self.store.events, **self._events}

    def _registration(self, customer_id: UUID) -> StoredRegistration | None:
        for event_id, envelope in self._all_events().items():
            if envelope["aggregateId"] == str(customer_id):
                return StoredRegistration(
                    customer_id, CustomerRegistered.from_dict(envelope), event_id in self.store.published
                )
        return None

    async def known_registrations(self, event_ids: Sequence[UUID], user_ids: Sequence[UUID]) -> KnownRegistrations:
        self._check("known_registrations", list(event_ids), list(user_ids))
        return KnownRegistrations(self._by_event_id(event_ids), self._by_user_id(user_ids))

    def _by_event_id(self, event_ids: Sequence[UUID]) -> dict[UUID, StoredRegistration]:
        processed = {**self.store.processed, **self._processed}
        found = {}
        for event_id in event_ids:
            if event_id in processed:
                registration = self._registration(processed[event_id])
                if registration is not None:
                    found[event_id] = registration
        return found

    def _by_user_id(self, user_ids: Sequence[UUID]) -> dict[UUID, StoredRegistration]:
        found = {}
        for customer in self._all_customers():
            if customer.user_id in user_ids:
                registration = self._registration(customer.customer_id)
                if registration is not None:
                    found[customer.user_id] = registration
        return found

    async def reserve_customer_numbers(self, year_month: str, count: int) -> int:
        self._check("reserve_customer_numbers", year_month, count)
        current = self._counters.get(year_month, self.store.counters.get(year_month, 0))
        self._counters[year_month] = current + count
        return current + count

    async def add_customers(self, customers: Sequence[Customer]) -> None:
        self._check("add_customers", list(customers))
        existing = self._all_customers()
        user_ids = {customer.user_id for customer in existing}
        numbers = {customer.customer_number for customer in existing}
        for customer in customers:
            if customer.user_id in user_ids:
                raise StoreConflict("uniqueness conflict: customers_user_id_key")
            if customer.customer_number in numbers:
                raise StoreConflict("uniqueness conflict: customers_customer_number_key")
            user_ids.add(customer.user_id)
            numbers.add(customer.customer_number)
        for customer in customers:
            self._customers[customer.customer_id] = customer

    async def append_events(self, events: Sequence[CustomerRegistered]) -> None:
        self._check("append_events", list(events))
        existing = self._all_events()
        if any(event.event_id in existing for event in events):
            raise StoreConflict("uniqueness conflict: event_store_pkey")
        # every event here is version 1 of its customer: (aggregate_id, aggregate_version) is unique
        aggregates = [envelope["aggregateId"] for envelope in existing.values()]
        new_aggregates = [str(event.customer_id) for event in events]
        if len(set(new_aggregates)) < len(new_aggregates) or set(new_aggregates) & set(aggregates):
            raise StoreConflict("uniqueness conflict: event_store_aggregate_id_aggregate_version_key")
        for event in events:
            self._events[event.event_id] = event.to_dict()

    async def mark_processed(self, processed: Sequence[tuple[UUID, UUID]]) -> None:
        self._check("mark_processed", list(processed))
        existing = {**self.store.processed, **self._processed}
        if any(event_id in existing for event_id, _ in processed):
            raise StoreConflict("uniqueness conflict: processed_events_pkey")
        customers = {customer.customer_id for customer in self._all_customers()}
        if any(customer_id not in customers for _, customer_id in processed):
            raise RecordRejected("PostgreSQL refused the record: ForeignKeyViolation")
        self._processed.update(processed)

    async def commit(self) -> None:
        self._check("commit")
        self.store.customers.update(self._customers)
        self.store.events.update(self._events)
        self.store.processed.update(self._processed)
        self.store.counters.update(self._counters)
        self.committed = True

    async def rollback(self) -> None:
        if self.committed or self.rolled_back:
            return
        self._customers.clear()
        self._events.clear()
        self._processed.clear()
        self._counters.clear()
        self.rolled_back = True


# --- the publisher ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DeadLetter:
    """One ``dead_letter`` call, with the error as the DLQ headers carry it."""

    key: bytes | None
    value: bytes | None
    origin: tuple[str, int, int]
    error: BaseException
    attempts: int
    headers: list[tuple[str, bytes | None]] | None

    @property
    def error_class(self) -> str:
        return type(self.error).__name__

    @property
    def error_message(self) -> str:
        return str(self.error)


@dataclass
class FakePublisher(EventPublisher):
    """Records what reached Kafka; ``failures`` operations: "publish_customer_registered", "dead_letter"."""

    batches: list[list[Envelope]] = field(default_factory=list)
    traces: list[dict[UUID, Context]] = field(default_factory=list)  # each batch's trace_of
    dead_letters: list[DeadLetter] = field(default_factory=list)
    failures: FailurePlan = field(default_factory=FailurePlan)

    @property
    def published(self) -> list[Envelope]:
        return [envelope for batch in self.batches for envelope in batch]

    async def publish_customer_registered(
        self, events: Sequence[CustomerRegistered], trace_of: Mapping[UUID, Context] | None = None
    ) -> None:
        self.failures.check("publish_customer_registered", list(events))
        self.batches.append([event.to_dict() for event in events])  # as it goes on the wire
        self.traces.append(dict(trace_of or {}))

    async def dead_letter(
        self,
        key: bytes | None,
        value: bytes | None,
        origin: tuple[str, int, int],
        error: BaseException,
        attempts: int,
        headers: list[tuple[str, bytes | None]] | None = None,
    ) -> None:
        self.failures.check("dead_letter", key, value, origin, error, attempts)
        if key is None and value is None:
            key = b""  # as KafkaPublisher does: aiokafka cannot produce a record with neither
        self.dead_letters.append(DeadLetter(key, value, origin, error, attempts, headers))


class FakeProducer:
    """Faust's producer as KafkaPublisher uses it: ``send`` returns a future of the acknowledgement."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: Any,
    ) -> asyncio.Future[Any]:
        self.sent.append({"topic": topic, "key": key, "value": value, "headers": list(headers)})
        acknowledged: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        acknowledged.set_result(None)
        return acknowledged


# --- the projection's ports -------------------------------------------------------------------


class FakeProfiles(ProfileSource):
    """Customers as the command store holds them; ``failures`` operation: "customers"."""

    def __init__(self, customers: Iterable[Customer] | Mapping[UUID, Customer] = ()) -> None:
        if isinstance(customers, Mapping):
            self.by_id: Mapping[UUID, Customer] = customers  # shared, e.g. a FakeCustomerStore's
        else:
            self.by_id = {customer.customer_id: customer for customer in customers}
        self.failures = FailurePlan()

    async def customers(self, customer_ids: Sequence[UUID]) -> list[Customer]:
        self.failures.check("customers", list(customer_ids))
        return [self.by_id[customer_id] for customer_id in customer_ids if customer_id in self.by_id]


class FakeReadModel(ReadModel):
    """Documents by ``_id``, replaced only by a higher ``_version``, unique by userId and customerNumber
    (ReadModelConflict, as MongoDB's indexes); ``failures`` operations: "upsert", "ping"."""

    def __init__(self) -> None:
        self.documents: dict[str, dict[str, Any]] = {}
        self.upserts: list[list[dict[str, Any]]] = []  # every batch that was accepted
        self.failures = FailurePlan()

    async def ping(self) -> bool:
        return self.failures.answers("ping")

    async def find_one(self, query: dict[str, Any]) -> dict[str, Any] | None:
        self.failures.check("find_one", query)
        for document in self.documents.values():
            if all(document.get(key) == value for key, value in query.items()):
                return document
        return None

    async def upsert(self, documents: Sequence[dict[str, Any]]) -> int:
        self.failures.check("upsert", list(documents))
        self.upserts.append(list(documents))
        written = 0
        for document in documents:
            for key in ("userId", "customerNumber"):  # the unique secondary indexes
                if any(
                    other["_id"] != document["_id"] and other.get(key) == document.get(key)
                    for other in self.documents.values()
                ):
                    raise ReadModelConflict(f"customer {document['_id']}: another document holds its {key}")
            stored = self.documents.get(document["_id"])
            if stored is None or stored["_version"] < document["_version"]:
                self.documents[document["_id"]] = document
                written += 1
        return written
