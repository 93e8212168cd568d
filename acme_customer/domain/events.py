"""The events this service consumes and produces, as plain dataclasses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from acme_customer.domain.clock import format_rfc3339, parse_rfc3339

EVENT_VERSION = "1.0"
USER_REGISTERED = "UserRegistered"
CUSTOMER_REGISTERED = "CustomerRegistered"


@dataclass(frozen=True)
class UserRegistered:
    """A validated ``UserRegistered`` from the identity service."""

    event_id: UUID
    timestamp: datetime
    correlation_id: UUID  # the eventId when the producer sent none
    causation_id: UUID | None
    user_id: UUID
    email: str
    first_name: str
    last_name: str
    marketing_opt_in: bool
    registered_at: datetime


@dataclass(frozen=True)
class CustomerRegistered:
    """The event this service publishes to ``customer.events`` (key = customerId)."""

    event_id: UUID
    timestamp: datetime
    customer_id: UUID
    correlation_id: UUID
    causation_id: UUID
    user_id: UUID
    customer_number: str
    email: str
    first_name: str
    last_name: str
    status: str
    type: str
    registered_at: datetime

    @classmethod
    def from_dict(cls, envelope: dict[str, Any]) -> CustomerRegistered:
        """The event from its wire form (as the event store keeps it); ``to_dict`` gives it back unchanged."""
        payload = envelope["payload"]
        return cls(
            event_id=UUID(envelope["eventId"]),
            timestamp=parse_rfc3339(envelope["timestamp"]),
            customer_id=UUID(payload["customerId"]),
            correlation_id=UUID(envelope["correlationId"]),
            causation_id=UUID(envelope["causationId"]),
            user_id=UUID(payload["userId"]),
            customer_number=payload["customerNumber"],
            email=payload["email"],
            first_name=payload["firstName"],
            last_name=payload["lastName"],
            status=payload["status"],
            type=payload["type"],
            registered_at=parse_rfc3339(payload["registeredAt"]),
        )

    def to_dict(self) -> dict[str, Any]:
        """The wire form: the story's envelope and payload, field for field."""
        return {
            "eventId": str(self.event_id),
            "eventType": CUSTOMER_REGISTERED,
            "eventVersion": EVENT_VERSION,
            "timestamp": format_rfc3339(self.timestamp),
            "aggregateId": str(self.customer_id),
            "aggregateType": "Customer",
            "correlationId": str(self.correlation_id),
            "causationId": str(self.causation_id),
            "payload": {
                "customerId": str(self.customer_id),
                "userId": str(self.user_id),
                "customerNumber": self.customer_number,
                "email": self.email,
                "firstName": self.first_name,
                "lastName": self.last_name,
                "status": self.status,
                "type": self.type,
                "registeredAt": format_rfc3339(self.registered_at),
            },
        }
