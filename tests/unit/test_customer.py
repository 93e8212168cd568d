"""The customer a registration creates and the CustomerRegistered event that records it."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from acme_customer.domain.customer import Customer, new_customer_id, register_customer
from acme_customer.domain.customer_number import CustomerNumber
from acme_customer.domain.events import CustomerRegistered
from acme_customer.domain.validation import parse_user_registered
from tests.story import STORY_CUSTOMER_REGISTERED
from tests.unit.builders import (
    CUSTOMER_EVENT_ID,
    CUSTOMER_ID,
    MISSING,
    STORY_MOMENT,
    USER_EVENT_ID,
    USER_ID,
    ids,
    user_registered,
    user_registered_document,
)

STORY_NUMBER = CustomerNumber("202601", 142)

# The story's "Initial Profile State", verbatim.
STORY_INITIAL_PROFILE: dict[str, Any] = json.loads("""
{
  "customerId": "01941234-5678-7abc-def0-123456789020",
  "userId": "01941234-5678-7abc-def0-123456789abc",
  "customerNumber": "ACME-202601-000142",
  "name": {"firstName": "Jane", "lastName": "Doe", "displayName": "Jane Doe"},
  "email": {"address": "customer@example.com", "verified": false},
  "phone": null,
  "status": "PENDING_VERIFICATION",
  "type": "INDIVIDUAL",
  "profile": {
    "dateOfBirth": null,
    "gender": null,
    "preferredLocale": "en-US",
    "timezone": "UTC",
    "preferredCurrency": "USD"
  },
  "preferences": {
    "communication": {"email": true, "sms": false, "push": false, "marketing": false},
    "privacy": {"shareDataWithPartners": false, "allowAnalytics": true}
  },
  "addresses": [],
  "segments": [],
  "registeredAt": "2026-01-02T10:30:02Z",
  "lastActivityAt": "2026-01-02T10:30:02Z",
  "profileCompleteness": 25
}
""")

STORY_EVENT = STORY_CUSTOMER_REGISTERED


def register_story_customer(**changes: Any) -> tuple[Customer, CustomerRegistered]:
    """Jane Doe's registration with the story's ids (customer id first, then the event id)."""
    return register_customer(
        user_registered(**changes), STORY_NUMBER, STORY_MOMENT, ids(CUSTOMER_ID, CUSTOMER_EVENT_ID)
    )


# --- the initial profile ----------------------------------------------------------------------


def test_initial_profile_is_exactly_the_storys_initial_profile_state() -> None:
    customer, _ = register_story_customer()

    assert customer.to_profile() == STORY_INITIAL_PROFILE


def test_ac08_initial_profile_reports_completeness_25() -> None:
    customer, _ = register_story_customer()

    assert customer.profile_completeness == 25
    assert customer.to_profile()["profileCompleteness"] == 25


def test_initial_profile_is_pending_verification_individual_with_unverified_email() -> None:
    customer, _ = register_story_customer()

    assert customer.status == "PENDING_VERIFICATION"
    assert customer.type == "INDIVIDUAL"
    assert customer.email_verified is False


def test_display_name_is_first_name_space_last_name() -> None:
    customer, _ = register_story_customer(first_name="Mary Ann", last_name="van der Berg")

    assert customer.to_profile()["name"]["displayName"] == "Mary Ann van der Berg"


def test_display_name_of_two_longest_accepted_names_fits_its_varchar_101_column() -> None:
    # the story's schema says VARCHAR(100); 50 + space + 50 needs 101, so the migration widens it
    user = parse_user_registered(user_registered_document(payload__firstName="a" * 50, payload__lastName="b" * 50))
    customer, _ = register_customer(user, STORY_NUMBER, STORY_MOMENT)

    assert len(customer.display_name) == 101


def test_registered_at_and_last_activity_come_from_the_registration_not_from_now() -> None:
    registered = datetime(2026, 1, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-1)))
    customer, event = register_customer(
        user_registered(registered_at=registered), CustomerNumber("202602", 1), datetime(2026, 3, 1, tzinfo=UTC)
    )

    profile = customer.to_profile()
    assert profile["registeredAt"] == "2026-02-01T00:59:59Z"
    assert profile["lastActivityAt"] == "2026-02-01T00:59:59Z"
    assert event.to_dict()["payload"]["registeredAt"] == "2026-02-01T00:59:59Z"
    assert event.to_dict()["timestamp"] == "2026-03-01T00:00:00Z"


def test_customer_number_is_the_one_allocated() -> None:
    customer, event = register_story_customer()

    assert customer.to_profile()["customerNumber"] == "ACME-202601-000142"
    assert event.customer_number == "ACME-202601-000142"


# --- AC-0002-03-07: marketing preference follows the opt-in -----------------------------------


@pytest.mark.parametrize("opt_in", [True, False])
def test_ac07_marketing_preference_follows_marketing_opt_in(opt_in: bool) -> None:
    customer, _ = register_story_customer(marketing_opt_in=opt_in)

    communication = customer.to_profile()["preferences"]["communication"]
    assert communication["marketing"] is opt_in
    assert (communication["email"], communication["sms"], communication["push"]) == (True, False, False)


def test_ac07_absent_opt_in_in_the_event_means_no_marketing() -> None:
    document = user_registered_document(payload__marketingOptIn=MISSING)
    customer, _ = register_customer(parse_user_registered(document), STORY_NUMBER, STORY_MOMENT)

    assert customer.to_profile()["preferences"]["communication"]["marketing"] is False


def test_ac07_opt_in_does_not_change_privacy_defaults() -> None:
    customer, _ = register_story_customer(marketing_opt_in=True)

    assert customer.to_profile()["preferences"]["privacy"] == {"shareDataWithPartners": False, "allowAnalytics": True}


# --- AC-0002-03-02: customer id ---------------------------------------------------------------


def test_ac02_customer_id_is_a_uuid_v7_distinct_from_the_user_id() -> None:
    customer, _ = register_customer(user_registered(), STORY_NUMBER, STORY_MOMENT)

    customer_id = UUID(customer.to_profile()["customerId"])
    assert customer_id.version == 7
    assert customer_id.variant == "specified in RFC 4122"
    assert customer_id != USER_ID
    assert customer.customer_id == customer_id


def test_ac02_customer_id_carries_the_current_time() -> None:
    before_ms = time.time_ns() // 1_000_000
    customer, _ = register_customer(user_registered(), STORY_NUMBER, STORY_MOMENT)
    after_ms = time.time_ns() // 1_000_000

    embedded_ms = customer.customer_id.int >> 80
    assert before_ms <= embedded_ms <= after_ms + 10 * 60 * 1000  # uuid6 may run ahead to stay monotonic


def test_ac02_customer_ids_are_time_ordered() -> None:
    generated = [new_customer_id() for _ in range(200)]

    assert generated == sorted(generated)
    assert len(set(generated)) == len(generated)
    assert all(customer_id.version == 7 for customer_id in generated)


def test_ac02_when_the_id_factory_first_returns_the_user_id_another_id_is_drawn() -> None:
    customer, event = register_customer(
        user_registered(), STORY_NUMBER, STORY_MOMENT, ids(USER_ID, CUSTOMER_ID, CUSTOMER_EVENT_ID)
    )

    assert customer.customer_id == CUSTOMER_ID
    assert customer.customer_id != customer.user_id
    assert event.to_dict()["aggregateId"] == str(CUSTOMER_ID)
    assert event.event_id == CUSTOMER_EVENT_ID


def test_event_id_is_a_fresh_uuid_v7_distinct_from_customer_and_input_event() -> None:
    customer, event = register_customer(user_registered(), STORY_NUMBER, STORY_MOMENT)

    assert event.event_id.version == 7
    assert event.event_id not in (customer.customer_id, USER_EVENT_ID, USER_ID)


# --- the CustomerRegistered event (story "Domain Event", AC-0002-03-06) ----------------------


def test_customer_registered_matches_the_storys_event_field_for_field() -> None:
    _, event = register_story_customer()

    assert event.to_dict() == STORY_EVENT


def test_customer_registered_has_the_envelope_keys_in_the_storys_order() -> None:
    _, event = register_story_customer()
    wire = event.to_dict()

    assert list(wire) == list(STORY_EVENT)
    assert list(wire["payload"]) == list(STORY_EVENT["payload"])


def test_customer_registered_envelope_names_the_customer_aggregate() -> None:
    customer, event = register_story_customer()
    wire = event.to_dict()

    assert wire["eventType"] == "CustomerRegistered"
    assert wire["eventVersion"] == "1.0"
    assert wire["aggregateType"] == "Customer"
    assert wire["aggregateId"] == wire["payload"]["customerId"] == str(customer.customer_id)


def test_ac06_causation_id_is_the_user_registered_event_id() -> None:
    _, event = register_story_customer()

    assert event.to_dict()["causationId"] == str(USER_EVENT_ID)


def test_ac06_correlation_id_is_propagated_from_the_user_registered_event() -> None:
    other = UUID("0194aaaa-bbbb-7ccc-8ddd-eeeeeeeeeeee")
    _, event = register_story_customer(correlation_id=other)

    assert event.to_dict()["correlationId"] == str(other)


def test_ac06_without_a_correlation_id_the_chain_starts_at_the_user_registered_event_id() -> None:
    user = parse_user_registered(user_registered_document(correlationId=MISSING))
    _, event = register_customer(user, STORY_NUMBER, STORY_MOMENT)

    wire = event.to_dict()
    assert wire["correlationId"] == str(USER_EVENT_ID)
    assert wire["causationId"] == str(USER_EVENT_ID)


def test_ac06_causation_is_the_triggering_event_even_when_it_had_its_own_causation() -> None:
    _, event = register_story_customer(causation_id=UUID("0194ffff-0000-7000-8000-000000000000"))

    assert event.to_dict()["causationId"] == str(USER_EVENT_ID)


def test_customer_registered_wire_form_is_plain_json() -> None:
    _, event = register_story_customer()

    assert json.loads(json.dumps(event.to_dict())) == event.to_dict()


names = st.text(min_size=1, max_size=50).filter(lambda s: s.strip() == s and s != "")


@given(
    user_id=st.uuids(),
    event_id=st.uuids(),
    correlation_id=st.uuids(),
    first_name=names,
    last_name=names,
    opt_in=st.booleans(),
    sequence=st.integers(1, 10**7),
    registered_at=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
)
def test_event_payload_and_profile_agree_for_any_registration(
    user_id: UUID,
    event_id: UUID,
    correlation_id: UUID,
    first_name: str,
    last_name: str,
    opt_in: bool,
    sequence: int,
    registered_at: datetime,
) -> None:
    user = user_registered(
        user_id=user_id,
        event_id=event_id,
        correlation_id=correlation_id,
        first_name=first_name,
        last_name=last_name,
        marketing_opt_in=opt_in,
        registered_at=registered_at,
    )
    customer, event = register_customer(user, CustomerNumber("202601", sequence), STORY_MOMENT)
    profile, wire = customer.to_profile(), event.to_dict()

    assert wire["payload"] == {
        "customerId": profile["customerId"],
        "userId": profile["userId"],
        "customerNumber": profile["customerNumber"],
        "email": profile["email"]["address"],
        "firstName": profile["name"]["firstName"],
        "lastName": profile["name"]["lastName"],
        "status": profile["status"],
        "type": profile["type"],
        "registeredAt": profile["registeredAt"],
    }
    assert profile["userId"] == str(user_id)
    assert profile["customerId"] != str(user_id)
    assert (wire["causationId"], wire["correlationId"]) == (str(event_id), str(correlation_id))
    assert profile["preferences"]["communication"]["marketing"] is opt_in
    assert customer.profile_completeness == 25


@given(moment=st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9999, 1, 1), timezones=st.just(UTC)))
def test_a_customer_registered_read_back_from_its_wire_form_is_the_same_event(moment: datetime) -> None:
    # the event store keeps the wire form; a redelivery republishes what is read back from it
    _, event = register_customer(user_registered(registered_at=moment), CustomerNumber("202601", 7), moment)

    assert CustomerRegistered.from_dict(event.to_dict()) == event
    assert CustomerRegistered.from_dict(event.to_dict()).to_dict() == event.to_dict()
