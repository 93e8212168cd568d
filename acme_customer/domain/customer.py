"""The customer aggregate and its initial state at registration (the story's "Initial Profile State")."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from uuid6 import uuid7

from acme_customer.domain.clock import format_rfc3339
from acme_customer.domain.completeness import profile_completeness
from acme_customer.domain.customer_number import CustomerNumber
from acme_customer.domain.events import CustomerRegistered, UserRegistered

PENDING_VERIFICATION = "PENDING_VERIFICATION"
INDIVIDUAL = "INDIVIDUAL"
DEFAULT_LOCALE = "en-US"
DEFAULT_TIMEZONE = "UTC"
DEFAULT_CURRENCY = "USD"


def new_customer_id() -> UUID:
    """A time-ordered UUID v7 (AC-0002-03-02)."""
    return UUID(int=uuid7().int)  # a plain uuid.UUID, without a round trip through text


@dataclass(frozen=True)
class Preferences:
    email: bool = True
    sms: bool = False
    push: bool = False
    marketing: bool = False
    share_data_with_partners: bool = False
    allow_analytics: bool = True


@dataclass(frozen=True)
class Customer:
    """A customer profile as the command side stores it."""

    customer_id: UUID
    user_id: UUID
    customer_number: CustomerNumber
    first_name: str
    last_name: str
    email: str
    registered_at: datetime
    last_activity_at: datetime
    preferences: Preferences
    email_verified: bool = False
    status: str = PENDING_VERIFICATION
    type: str = INDIVIDUAL
    preferred_locale: str = DEFAULT_LOCALE
    timezone: str = DEFAULT_TIMEZONE
    preferred_currency: str = DEFAULT_CURRENCY

    @property
    def display_name(self) -> str:
        return f"{self.first_name} {self.last_name}"

    @property
    def profile_completeness(self) -> int:
        return profile_completeness_of_parts(self)

    def to_profile(self) -> dict[str, Any]:
        """The profile document (the story's "Initial Profile State" shape)."""
        return {
            "customerId": str(self.customer_id),
            "userId": str(self.user_id),
            "customerNumber": str(self.customer_number),
            "name": {"firstName": self.first_name, "lastName": self.last_name, "displayName": self.display_name},
            "email": {"address": self.email, "verified": self.email_verified},
            "phone": None,
            "status": self.status,
            "type": self.type,
            "profile": {
                "dateOfBirth": None,
                "gender": None,
                "preferredLocale": self.preferred_locale,
                "timezone": self.timezone,
                "preferredCurrency": self.preferred_currency,
            },
            "preferences": {
                "communication": {
                    "email": self.preferences.email,
                    "sms": self.preferences.sms,
                    "push": self.preferences.push,
                    "marketing": self.preferences.marketing,
                },
                "privacy": {
                    "shareDataWithPartners": self.preferences.share_data_with_partners,
                    "allowAnalytics": self.preferences.allow_analytics,
                },
            },
            "addresses": [],
            "segments": [],
            "registeredAt": format_rfc3339(self.registered_at),
            "lastActivityAt": format_rfc3339(self.last_activity_at),
            "profileCompleteness": profile_completeness_of_parts(self),
        }

    def to_read_model(self, version: int) -> dict[str, Any]:
        """The MongoDB document: the profile keyed by ``_id`` = customerId, with its ``_version``."""
        document = self.to_profile()
        document["_id"] = document.pop("customerId")
        document["_version"] = version
        return document


def profile_completeness_of_parts(customer: Customer) -> int:
    """The completeness score of a customer (see the scoring table in ``completeness``)."""
    return profile_completeness(
        {
            "name": {"firstName": customer.first_name, "lastName": customer.last_name},
            "email": {"address": customer.email, "verified": customer.email_verified},
            "phone": None,
            "profile": {"dateOfBirth": None, "gender": None},
            "addresses": [],
            "segments": [],
        }
    )


def register_customer(
    user: UserRegistered,
    customer_number: CustomerNumber,
    now: datetime,
    new_id: Callable[[], UUID] = new_customer_id,
) -> tuple[Customer, CustomerRegistered]:
    """The customer a registration creates, and the event that records it."""
    customer_id = new_id()
    if customer_id == user.user_id:  # AC-02: never the userId (a v7 clash is astronomically rare)
        customer_id = new_id()
    customer = Customer(
        customer_id=customer_id,
        user_id=user.user_id,
        customer_number=customer_number,
        first_name=user.first_name,
        last_name=user.last_name,
        email=user.email,
        registered_at=user.registered_at,
        last_activity_at=user.registered_at,
        preferences=Preferences(marketing=user.marketing_opt_in),
    )
    event = CustomerRegistered(
        event_id=new_id(),
        timestamp=now,
        customer_id=customer.customer_id,
        correlation_id=user.correlation_id,
        causation_id=user.event_id,
        user_id=user.user_id,
        customer_number=str(customer_number),
        email=customer.email,
        first_name=customer.first_name,
        last_name=customer.last_name,
        status=customer.status,
        type=customer.type,
        registered_at=customer.registered_at,
    )
    return customer, event
