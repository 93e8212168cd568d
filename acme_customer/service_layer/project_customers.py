"""Use case: project CustomerRegistered events into the MongoDB read model (AC-0002-03-05)."""

from __future__ import annotations

import abc
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link

from acme_customer.domain.customer import Customer
from acme_customer.domain.events import CUSTOMER_REGISTERED
from acme_customer.errors import InvalidEvent
from acme_customer.logs import log_fields

tracer = trace.get_tracer("acme_customer")
logger = logging.getLogger(__name__)
REGISTRATION_VERSION = 1  # CustomerRegistered creates version 1 of a customer


class ProfileSource(abc.ABC):
    """Reads customers from the command store."""

    @abc.abstractmethod
    async def customers(self, customer_ids: Sequence[UUID]) -> list[Customer]: ...


class ReadModel(abc.ABC):
    """Stores read-model documents; a document is replaced only by a higher ``_version``."""

    @abc.abstractmethod
    async def upsert(self, documents: Sequence[dict[str, Any]]) -> int: ...

    @abc.abstractmethod
    async def ping(self) -> bool:
        """Whether the read model answers now (cheap; never raises)."""

    @abc.abstractmethod
    async def find_one(self, query: dict[str, Any]) -> dict[str, Any] | None:
        """The document whose fields equal all of ``query``'s (``_id``, ``userId``, ``customerNumber``)."""


@dataclass(frozen=True)
class Projection:
    """What one projection wrote, and which customers the command store does not hold."""

    written: int
    missing: list[UUID]


def registered_customer_id(document: object) -> UUID | None:
    """The customer a CustomerRegistered registers; None for another event type.

    Raises InvalidEvent for a document that is not an event or a CustomerRegistered without a
    customerId (``aggregateId``): nothing could ever project it.
    """
    if not isinstance(document, dict):
        raise InvalidEvent("event: expected an object")
    if document.get("eventType") != CUSTOMER_REGISTERED:
        return None
    try:
        return UUID(str(document["aggregateId"]))
    except (KeyError, ValueError):
        raise InvalidEvent("aggregateId: missing or not a UUID") from None


async def project_registrations(
    customer_ids: Sequence[UUID],
    source: ProfileSource,
    read_model: ReadModel,
    *,
    parent: Context | None = None,
    links: Sequence[Link] = (),
) -> Projection:
    """Upsert the read-model document of each customer from the command store (AC-05).

    The ``project_read_model`` span starts under ``parent`` (None: the current context) with
    ``links``: the traces of the events projected (stream/trace_context.py).
    """
    unique_ids = list(dict.fromkeys(customer_ids))
    if not unique_ids:
        return Projection(0, [])
    with tracer.start_as_current_span("project_read_model", context=parent, links=links) as span:
        span.set_attribute("customer.count", len(unique_ids))
        customers = await source.customers(unique_ids)
        written = await read_model.upsert([customer.to_read_model(REGISTRATION_VERSION) for customer in customers])
    found = {customer.customer_id for customer in customers}
    return Projection(written, [customer_id for customer_id in unique_ids if customer_id not in found])


def _customer_ids(envelopes: Sequence[dict[str, Any]]) -> list[UUID]:
    ids = []
    for envelope in envelopes:
        if envelope.get("eventType") != CUSTOMER_REGISTERED:
            continue
        try:
            ids.append(UUID(str(envelope["aggregateId"])))
        except (KeyError, ValueError):
            event_id = envelope.get("eventId")
            logger.warning(
                "skipping a CustomerRegistered without a valid aggregateId (event %s)",
                event_id,
                extra=log_fields(event_id=event_id, outcome="skipped"),
            )
    return ids


async def project_customers(envelopes: Sequence[dict[str, Any]], source: ProfileSource, read_model: ReadModel) -> int:
    """Upsert the read-model document of every customer the events registered; return how many changed."""
    return (await project_registrations(_customer_ids(envelopes), source, read_model)).written


async def rebuild_read_model(
    pages: AsyncIterator[Sequence[dict[str, Any]]], source: ProfileSource, read_model: ReadModel
) -> tuple[int, int]:
    """Project every stored CustomerRegistered again; return (events read, documents written).

    Safe while workers run: a document is only replaced by a higher version, so the rebuild
    writes what is missing or older and leaves the rest.
    """
    events = written = 0
    async for page in pages:
        events += len(page)
        written += await project_customers(page, source, read_model)
    return events, written
