"""In-memory fakes of verify's ports: PostgreSQL as the audit reads it, and the read model's audit side.

Pages are two rows long, so every walk turns several pages even over a handful of customers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from acme_customer.domain.customer import Customer
from acme_customer.domain.events import CustomerRegistered
from acme_customer.service_layer.verify_stores import CommandStoreAudit, CustomerState, IndexReport, ReadModelAudit
from tests.unit.fakes import FakeReadModel

PAGE = 2


def _pages(items: list[Any]) -> list[list[Any]]:
    return [items[start : start + PAGE] for start in range(0, len(items), PAGE)]


def _from(since: str | None, number: str) -> bool:
    return since is None or number >= f"ACME-{since}"


@dataclass
class FakeCommandAudit(CommandStoreAudit):
    """Customers (``numbers`` holds the column's text, malformed or not), their events, processed rows, counters."""

    rows: dict[UUID, Customer] = field(default_factory=dict)  # customerId -> the customer (its row)
    numbers: dict[UUID, str] = field(default_factory=dict)
    without_preferences: set[UUID] = field(default_factory=set)
    events: dict[UUID, CustomerRegistered] = field(default_factory=dict)  # eventId -> event
    published: set[UUID] = field(default_factory=set)
    processed: dict[UUID, UUID | None] = field(default_factory=dict)  # input eventId -> customerId
    counter: dict[str, int] = field(default_factory=dict)

    def register(self, customer: Customer, event: CustomerRegistered, input_event_id: UUID) -> None:
        """As the service does: the customer, its event (published), its processed row, the counter."""
        self.rows[customer.customer_id] = customer
        self.numbers[customer.customer_id] = str(customer.customer_number)
        self.events[event.event_id] = event
        self.published.add(event.event_id)
        self.processed[input_event_id] = customer.customer_id
        month = customer.customer_number.year_month
        self.counter[month] = max(self.counter.get(month, 0), customer.customer_number.sequence)

    def delete_customer(self, customer_id: UUID) -> None:
        del self.rows[customer_id]
        del self.numbers[customer_id]

    def _state(self, customer_id: UUID, whole: bool) -> CustomerState:
        events = [event for event in self.events.values() if event.customer_id == customer_id]
        has_preferences = customer_id not in self.without_preferences
        return CustomerState(
            customer_id=customer_id,
            customer_number=self.numbers[customer_id],
            has_preferences=has_preferences,
            events=len(events),
            unpublished=tuple(event.event_id for event in events if event.event_id not in self.published),
            customer=self.rows[customer_id] if whole and has_preferences else None,
        )

    async def customer_pages(self, since: str | None) -> AsyncIterator[list[CustomerState]]:
        ids = sorted(customer_id for customer_id in self.rows if _from(since, self.numbers[customer_id]))
        for page in _pages(ids):
            yield [self._state(customer_id, whole=False) for customer_id in page]

    async def customers(self, customer_ids: Sequence[UUID]) -> dict[UUID, CustomerState]:
        return {i: self._state(i, whole=True) for i in customer_ids if i in self.rows}

    async def orphan_event_pages(self, since: str | None) -> AsyncIterator[tuple[int, list[UUID]]]:
        ids = sorted(i for i, event in self.events.items() if _from(since, event.customer_number))
        for page in _pages(ids):
            yield len(page), [i for i in page if self.events[i].customer_id not in self.rows]

    async def orphan_processed_pages(self, since: str | None) -> AsyncIterator[tuple[int, list[UUID]]]:
        for page in _pages(sorted(self.processed)):
            yield len(page), [i for i in page if self.processed[i] not in self.rows]

    async def counters(self, since: str | None) -> dict[str, int]:
        return {month: value for month, value in self.counter.items() if since is None or month >= since}

    async def unpublished_events(self, event_ids: Sequence[UUID]) -> list[CustomerRegistered]:
        return [self.events[i] for i in event_ids if i in self.events and i not in self.published]

    async def existing(self, customer_ids: Sequence[UUID]) -> set[UUID]:
        return {i for i in customer_ids if i in self.rows}

    async def raise_counters(self, highest: dict[str, int]) -> int:
        changed = [month for month, value in highest.items() if self.counter.get(month, 0) < value]
        for month in changed:
            self.counter[month] = highest[month]
        return len(changed)


class FakeReadModelAudit(ReadModelAudit):
    """The audit side of a FakeReadModel's documents; ``report`` is what the indexes look like."""

    def __init__(self, read_model: FakeReadModel):
        self.read_model = read_model
        self.report = IndexReport([], [], [])
        self.indexes_ensured = 0

    async def document_pages(self, since: str | None) -> AsyncIterator[list[dict[str, Any]]]:
        documents = [d for d in self.read_model.documents.values() if _from(since, str(d.get("customerNumber")))]
        for page in _pages(documents):
            yield page

    async def index_report(self) -> IndexReport:
        return self.report

    async def ensure_indexes(self) -> None:
        self.indexes_ensured += 1
        self.report = IndexReport([], [], self.report.undeclared)

    async def replace_unless_newer(self, documents: Sequence[dict[str, Any]]) -> int:
        replaced = 0
        for document in documents:
            stored = self.read_model.documents.get(document["_id"])
            if stored is not None and stored["_version"] <= document["_version"] and stored != document:
                self.read_model.documents[document["_id"]] = document
                replaced += 1
        return replaced

    async def delete(self, document_ids: Sequence[Any]) -> int:
        return sum(self.read_model.documents.pop(i, None) is not None for i in document_ids)
