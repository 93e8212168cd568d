"""Use case: project CustomerRegistered events into the MongoDB read model (AC-0002-03-05)."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from opentelemetry import trace

from acme_customer.domain.customer import Customer
from acme_customer.domain.events import CUSTOMER_REGISTERED

tracer = trace.get_tracer("acme_customer")
REGISTRATION_VERSION = 1  # CustomerRegistered creates version 1 of a customer


class ProfileSource(abc.ABC):
    """Reads customers from the command store."""

    @abc.abstractmethod
    async def customers(self, customer_ids: Sequence[UUID]) -> list[Customer]: ...


class ReadModel(abc.ABC):
    """Stores read-model documents; a document is replaced only by a higher ``_version``."""

    @abc.abstractmethod
    async def upsert(self, documents: Sequence[dict[str, Any]]) -> int: ...


async def project_customers(envelopes: Sequence[dict[str, Any]], source: ProfileSource, read_model: ReadModel) -> int:
    """Upsert the read-model document of every customer the events registered; return how many changed."""
    customer_ids = list(
        dict.fromkeys(UUID(e["aggregateId"]) for e in envelopes if e.get("eventType") == CUSTOMER_REGISTERED)
    )
    if not customer_ids:
        return 0
    with tracer.start_as_current_span("project_read_model") as span:
        span.set_attribute("customer.count", len(customer_ids))
        customers = await source.customers(customer_ids)
        return await read_model.upsert([customer.to_read_model(REGISTRATION_VERSION) for customer in customers])
