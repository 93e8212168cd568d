"""Test data for the unit tests: the story's example values and valid input documents."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from acme_customer.domain.events import UserRegistered

# The ids of the story's example (US-0002-03, "Domain Event" and "Initial Profile State").
USER_EVENT_ID = UUID("01941234-5678-7abc-def0-123456789001")  # the UserRegistered eventId
CORRELATION_ID = UUID("01941234-5678-7abc-def0-123456789002")
CUSTOMER_EVENT_ID = UUID("01941234-5678-7abc-def0-123456789010")
CUSTOMER_ID = UUID("01941234-5678-7abc-def0-123456789020")
USER_ID = UUID("01941234-5678-7abc-def0-123456789abc")

STORY_MOMENT = datetime(2026, 1, 2, 10, 30, 2, tzinfo=UTC)  # 2026-01-02T10:30:02Z

MISSING = object()  # marks a key to delete in ``user_registered_document``


def user_registered_document(**changes: Any) -> dict[str, Any]:
    """A valid ``UserRegistered`` document for the story's Jane Doe.

    ``changes`` maps a dotted path (``payload__email`` for ``payload.email``) to a new value;
    the value ``MISSING`` deletes the key.
    """
    document: dict[str, Any] = {
        "eventId": str(USER_EVENT_ID),
        "eventType": "UserRegistered",
        "eventVersion": "1.0",
        "timestamp": "2026-01-02T10:30:00Z",
        "aggregateId": str(USER_ID),
        "aggregateType": "User",
        "correlationId": str(CORRELATION_ID),
        "payload": {
            "userId": str(USER_ID),
            "email": "customer@example.com",
            "firstName": "Jane",
            "lastName": "Doe",
            "marketingOptIn": False,
            "registeredAt": "2026-01-02T10:30:02Z",
        },
    }
    for dotted, value in changes.items():
        set_path(document, dotted.replace("__", "."), value)
    return document


def set_path(document: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Set (or with ``MISSING`` delete) ``path`` such as ``payload.email`` in place."""
    *parents, leaf = path.split(".")
    target = document
    for key in parents:
        target = target[key]
    if value is MISSING:
        target.pop(leaf, None)
    else:
        target[leaf] = value
    return document


def with_path(document: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``document`` with ``path`` set (or deleted)."""
    return set_path(copy.deepcopy(document), path, value)


def user_registered(**changes: Any) -> UserRegistered:
    """A validated ``UserRegistered`` for the story's Jane Doe, fields overridable."""
    fields: dict[str, Any] = {
        "event_id": USER_EVENT_ID,
        "timestamp": datetime(2026, 1, 2, 10, 30, 0, tzinfo=UTC),
        "correlation_id": CORRELATION_ID,
        "causation_id": None,
        "user_id": USER_ID,
        "email": "customer@example.com",
        "first_name": "Jane",
        "last_name": "Doe",
        "marketing_opt_in": False,
        "registered_at": STORY_MOMENT,
    }
    fields.update(changes)
    return UserRegistered(**fields)


def ids(*values: UUID) -> Callable[[], UUID]:
    """An id factory that hands out ``values`` in order (and fails loudly if asked for more)."""
    iterator = iter(values)
    return lambda: next(iterator)
