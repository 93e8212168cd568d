"""Crash and failure points for the fault-injection tests, installed only when the harness asks.

``bootstrap`` wraps the handler's command store in ``FaultyStore`` when ``ACME_FAULT_POINT``
names a point; otherwise none of this runs. With ``ACME_FAULT_TRIGGER`` (a file path), the
worker removes the file and SIGKILLs itself at the next pass through the point:
``before_commit`` and ``after_commit`` (around a unit of work's commit), ``after_publish``
(once Kafka acknowledged CustomerRegistered events and they are marked published, before
Faust acknowledges the input). With ``ACME_FAULT_POINT=create`` and ``ACME_FAULT_KEY`` (a
userId), every attempt to write a batch holding that user fails with a transient error for as
long as the trigger file exists: a failure confined to one record, hence one partition.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from uuid import UUID

from acme_customer.domain.customer import Customer
from acme_customer.domain.events import CustomerRegistered
from acme_customer.errors import StoreUnavailable
from acme_customer.service_layer.ports import CustomerStore, CustomerUnitOfWork, KnownRegistrations

POINTS = ("before_commit", "after_commit", "after_publish")


def requested(env: Mapping[str, str]) -> bool:
    """Whether the fault harness asked for a crash or failure point."""
    return bool(env.get("ACME_FAULT_POINT"))


class FaultyStore(CustomerStore):
    """The command store with the harness's crash and failure points around it."""

    def __init__(self, inner: CustomerStore, env: Mapping[str, str] = os.environ):
        self.inner = inner
        self.point = env.get("ACME_FAULT_POINT", "")
        self.trigger = env.get("ACME_FAULT_TRIGGER", "")
        self.key = env.get("ACME_FAULT_KEY", "")

    def unit_of_work(self) -> CustomerUnitOfWork:
        return _FaultyUnitOfWork(self, self.inner.unit_of_work())

    async def mark_published(self, event_ids: Sequence[UUID]) -> None:
        await self.inner.mark_published(event_ids)
        self.crash_at("after_publish")

    async def ping(self) -> bool:
        return await self.inner.ping()

    def crash_at(self, name: str) -> None:
        """SIGKILL this worker if ``name`` is the point and its trigger file exists (once per file)."""
        if self.point != name:
            return
        try:
            os.remove(self.trigger)
        except OSError:
            return
        os.kill(os.getpid(), signal.SIGKILL)

    def fail_at(self, name: str, keys: Iterable[str]) -> None:
        """Raise a transient failure while the trigger file exists and the key is among ``keys``."""
        if self.point == name and self.key and self.key in keys and os.path.exists(self.trigger):
            raise StoreUnavailable(f"injected transient failure at {name}")


class _FaultyUnitOfWork(CustomerUnitOfWork):
    def __init__(self, store: FaultyStore, inner: CustomerUnitOfWork):
        self.store = store
        self.inner = inner

    async def __aenter__(self) -> CustomerUnitOfWork:
        await self.inner.__aenter__()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.inner.__aexit__(kind, error, trace)

    async def known_registrations(self, event_ids: Sequence[UUID], user_ids: Sequence[UUID]) -> KnownRegistrations:
        return await self.inner.known_registrations(event_ids, user_ids)

    async def reserve_customer_numbers(self, year_month: str, count: int) -> int:
        return await self.inner.reserve_customer_numbers(year_month, count)

    async def add_customers(self, customers: Sequence[Customer]) -> None:
        self.store.fail_at("create", [str(customer.user_id) for customer in customers])
        await self.inner.add_customers(customers)

    async def append_events(self, events: Sequence[CustomerRegistered]) -> None:
        await self.inner.append_events(events)

    async def mark_processed(self, processed: Sequence[tuple[UUID, UUID]]) -> None:
        await self.inner.mark_processed(processed)

    async def commit(self) -> None:
        self.store.crash_at("before_commit")
        await self.inner.commit()
        self.store.crash_at("after_commit")

    async def rollback(self) -> None:
        await self.inner.rollback()
