"""Validation of incoming UserRegistered events: what is accepted, and the reason given otherwise."""

from __future__ import annotations

import re
import string
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from acme_customer.domain.validation import event_type_of, parse_user_registered
from acme_customer.errors import InvalidEvent, PermanentError
from tests.unit.builders import (
    CORRELATION_ID,
    MISSING,
    USER_EVENT_ID,
    USER_ID,
    user_registered_document,
    with_path,
)

CANONICAL_UUID = re.compile(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")


def reason(document: object) -> str:
    with pytest.raises(InvalidEvent) as caught:
        parse_user_registered(document)
    return str(caught.value)


# --- a valid event ----------------------------------------------------------------------------


def test_a_valid_user_registered_event_parses_into_its_fields() -> None:
    user = parse_user_registered(user_registered_document())

    assert user.event_id == USER_EVENT_ID
    assert user.timestamp == datetime(2026, 1, 2, 10, 30, 0, tzinfo=UTC)
    assert user.correlation_id == CORRELATION_ID
    assert user.causation_id is None
    assert user.user_id == USER_ID
    assert user.email == "customer@example.com"
    assert (user.first_name, user.last_name) == ("Jane", "Doe")
    assert user.marketing_opt_in is False
    assert user.registered_at == datetime(2026, 1, 2, 10, 30, 2, tzinfo=UTC)


def test_marketing_opt_in_true_is_read() -> None:
    assert parse_user_registered(user_registered_document(payload__marketingOptIn=True)).marketing_opt_in is True


@pytest.mark.parametrize("absent", [MISSING, None], ids=["absent", "null"])
def test_marketing_opt_in_absent_means_false(absent: object) -> None:
    assert parse_user_registered(user_registered_document(payload__marketingOptIn=absent)).marketing_opt_in is False


@pytest.mark.parametrize("absent", [MISSING, None], ids=["absent", "null"])
def test_registered_at_absent_defaults_to_the_envelope_timestamp(absent: object) -> None:
    user = parse_user_registered(
        user_registered_document(timestamp="2026-01-31T23:59:59-01:00", payload__registeredAt=absent)
    )

    assert user.registered_at == user.timestamp == datetime(2026, 2, 1, 0, 59, 59, tzinfo=UTC)


def test_timestamps_are_normalised_to_utc() -> None:
    user = parse_user_registered(user_registered_document(payload__registeredAt="2026-02-01T00:30:00+01:00"))

    assert user.registered_at == datetime(2026, 1, 31, 23, 30, tzinfo=UTC)
    assert user.registered_at.utcoffset() == timedelta(0)


def test_names_are_trimmed() -> None:
    user = parse_user_registered(user_registered_document(payload__firstName="  Jane\t", payload__lastName="\nDoe  "))

    assert (user.first_name, user.last_name) == ("Jane", "Doe")


def test_inner_spaces_of_names_are_kept() -> None:
    user = parse_user_registered(
        user_registered_document(payload__firstName=" Mary  Ann ", payload__lastName="de la Cruz")
    )

    assert (user.first_name, user.last_name) == ("Mary  Ann", "de la Cruz")


def test_email_is_trimmed() -> None:
    assert (
        parse_user_registered(user_registered_document(payload__email=" jane@example.com ")).email == "jane@example.com"
    )


@pytest.mark.parametrize("absent", [MISSING, None], ids=["absent", "null"])
def test_absent_correlation_id_is_the_event_id(absent: object) -> None:
    assert parse_user_registered(user_registered_document(correlationId=absent)).correlation_id == USER_EVENT_ID


def test_causation_id_is_read_when_present() -> None:
    causation = UUID("01941234-5678-7abc-def0-123456789000")

    assert parse_user_registered(user_registered_document(causationId=str(causation))).causation_id == causation


def test_upper_case_uuids_are_accepted_and_equal_their_lower_case_form() -> None:
    user = parse_user_registered(user_registered_document(payload__userId=str(USER_ID).upper()))

    assert user.user_id == USER_ID


@pytest.mark.parametrize("version", ["1.0", "1.1", "1"])
def test_any_1_x_event_version_is_accepted(version: str) -> None:
    assert parse_user_registered(user_registered_document(eventVersion=version)).event_id == USER_EVENT_ID


def test_names_of_exactly_50_characters_are_accepted() -> None:
    user = parse_user_registered(
        user_registered_document(payload__firstName="a" * 50, payload__lastName=" " + "b" * 50 + " ")
    )

    assert (user.first_name, user.last_name) == ("a" * 50, "b" * 50)


def test_an_email_of_exactly_255_characters_is_accepted() -> None:
    email = "a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 62
    assert len(email) == 255

    assert parse_user_registered(user_registered_document(payload__email=email)).email == email


def test_unknown_extra_fields_are_ignored() -> None:
    document = user_registered_document(extra="x", payload__phone="+15551234567")

    assert parse_user_registered(document).user_id == USER_ID


def test_event_type_of_reads_the_type_so_other_events_can_be_skipped() -> None:
    assert event_type_of({"eventType": "UserDeleted"}) == "UserDeleted"


def test_event_type_of_rejects_a_document_that_is_not_an_object() -> None:
    with pytest.raises(InvalidEvent, match=r"^event: expected a JSON object, got an array$"):
        event_type_of([])


def test_invalid_event_is_a_permanent_error() -> None:
    assert issubclass(InvalidEvent, PermanentError)


# --- each invalid kind, with its exact reason -------------------------------------------------

U = str(USER_ID)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("eventType", MISSING, "eventType: missing"),
        ("eventType", 5, "eventType: expected a string, got a number"),
        ("eventType", "UserDeleted", "eventType: expected 'UserRegistered'"),
        ("eventVersion", MISSING, "eventVersion: missing"),
        ("eventVersion", "2.0", "eventVersion: unsupported major version (this service reads 1.x)"),
        ("eventVersion", "10.0", "eventVersion: unsupported major version (this service reads 1.x)"),
        ("eventId", MISSING, "eventId: missing"),
        ("eventId", None, "eventId: missing"),
        ("eventId", "", "eventId: empty"),
        ("eventId", "   ", "eventId: empty"),
        ("eventId", 42, "eventId: expected a string, got a number"),
        ("eventId", "not-a-uuid", "eventId: not a UUID"),
        ("eventId", "{" + U + "}", "eventId: not a UUID"),
        ("eventId", "urn:uuid:" + U, "eventId: not a UUID"),
        ("eventId", U.replace("-", ""), "eventId: not a UUID"),
        ("timestamp", MISSING, "timestamp: missing"),
        ("timestamp", 1767349800, "timestamp: expected a string, got a number"),
        ("timestamp", "2026-01-02 10:30:00Z", "timestamp: not an RFC 3339 date-time"),
        ("timestamp", "2026-01-02T10:30:00", "timestamp: not an RFC 3339 date-time"),
        ("timestamp", "2026-02-30T10:30:00Z", "timestamp: not an RFC 3339 date-time"),
        ("aggregateType", MISSING, "aggregateType: missing"),
        ("aggregateId", MISSING, "aggregateId: missing"),
        ("aggregateId", "", "aggregateId: empty"),
        ("correlationId", "abc", "correlationId: not a UUID"),
        ("correlationId", 7, "correlationId: expected a string, got a number"),
        ("causationId", "abc", "causationId: not a UUID"),
        ("payload", MISSING, "payload: missing"),
        ("payload", None, "payload: missing"),
        ("payload", [], "payload: expected an object, got an array"),
        ("payload", "{}", "payload: expected an object, got a string"),
        ("payload", 1, "payload: expected an object, got a number"),
        ("payload.userId", MISSING, "payload.userId: missing"),
        ("payload.userId", "abc", "payload.userId: not a UUID"),
        ("payload.userId", 123, "payload.userId: expected a string, got a number"),
        ("payload.userId", U[:-1], "payload.userId: not a UUID"),
        ("payload.userId", U[:-1] + "g", "payload.userId: not a UUID"),
        ("payload.email", MISSING, "payload.email: missing"),
        ("payload.email", "", "payload.email: empty"),
        ("payload.email", True, "payload.email: expected a string, got a boolean"),
        ("payload.email", "jane", "payload.email: not an email address"),
        ("payload.email", "jane@localhost", "payload.email: not an email address"),
        ("payload.email", "jane@@example.com", "payload.email: not an email address"),
        ("payload.email", "jane doe@example.com", "payload.email: not an email address"),
        ("payload.email", "@example.com", "payload.email: not an email address"),
        ("payload.email", "jane@-example.com", "payload.email: not an email address"),
        ("payload.email", "a" * 65 + "@example.com", "payload.email: not an email address"),
        ("payload.email", "a" * 244 + "@example.com", "payload.email: longer than 255 characters"),
        ("payload.firstName", MISSING, "payload.firstName: missing"),
        ("payload.firstName", None, "payload.firstName: missing"),
        ("payload.firstName", 42, "payload.firstName: expected a string, got a number"),
        ("payload.firstName", ["Jane"], "payload.firstName: expected a string, got an array"),
        ("payload.firstName", "", "payload.firstName: empty or only whitespace"),
        ("payload.firstName", "   ", "payload.firstName: empty or only whitespace"),
        ("payload.firstName", "a" * 51, "payload.firstName: longer than 50 characters"),
        ("payload.lastName", MISSING, "payload.lastName: missing"),
        ("payload.lastName", "", "payload.lastName: empty or only whitespace"),
        ("payload.lastName", " \t\n", "payload.lastName: empty or only whitespace"),
        ("payload.lastName", "b" * 51, "payload.lastName: longer than 50 characters"),
        ("payload.lastName", {"value": "Doe"}, "payload.lastName: expected a string, got an object"),
        ("payload.marketingOptIn", "true", "payload.marketingOptIn: expected a boolean, got a string"),
        ("payload.marketingOptIn", 1, "payload.marketingOptIn: expected a boolean, got a number"),
        ("payload.marketingOptIn", 0.0, "payload.marketingOptIn: expected a boolean, got a number"),
        ("payload.marketingOptIn", [], "payload.marketingOptIn: expected a boolean, got an array"),
        ("payload.registeredAt", "yesterday", "payload.registeredAt: not an RFC 3339 date-time"),
        ("payload.registeredAt", "2026-01-02", "payload.registeredAt: not an RFC 3339 date-time"),
        ("payload.registeredAt", 5, "payload.registeredAt: expected a string, got a number"),
    ],
)
def test_each_invalid_field_is_rejected_with_its_reason(path: str, value: object, message: str) -> None:
    assert reason(with_path(user_registered_document(), path, value)) == message


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "event: expected a JSON object, got an array"),
        (None, "event: expected a JSON object, got null"),
        ("{}", "event: expected a JSON object, got a string"),
        (3, "event: expected a JSON object, got a number"),
        (True, "event: expected a JSON object, got a boolean"),
        (b"{}", "event: expected a JSON object, got bytes"),
    ],
)
def test_a_document_that_is_not_an_object_is_rejected(document: object, message: str) -> None:
    assert reason(document) == message


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("eventType", "Zelda"),
        ("eventVersion", "2.Zelda"),
        ("eventId", "Zelda"),
        ("timestamp", "Zelda Doe"),
        ("correlationId", "Zelda"),
        ("causationId", "Zelda"),
        ("payload.userId", "zelda@example.com"),
        ("payload.email", "zelda.doe@@example.com"),
        ("payload.email", "zelda" * 60 + "@example.com"),
        ("payload.firstName", "Zelda" * 11),
        ("payload.lastName", "Zelda" * 11),
        ("payload.marketingOptIn", "Zelda"),
        ("payload.registeredAt", "Zelda's birthday"),
    ],
)
def test_reasons_never_contain_the_offending_value(path: str, value: str) -> None:
    message = reason(with_path(user_registered_document(), path, value))

    assert "zelda" not in message.lower()
    assert message.startswith(path + ": ")


@pytest.mark.parametrize("path", ["eventId", "correlationId", "causationId", "payload.userId"])
def test_a_uuid_with_a_trailing_newline_is_an_invalid_event(path: str) -> None:
    document = with_path(user_registered_document(), path, "01941234-5678-7abc-def0-123456789abc\n")

    assert reason(document) == f"{path}: not a UUID"


@pytest.mark.parametrize("path", ["timestamp", "payload.registeredAt"])
def test_a_timestamp_outside_the_representable_range_is_an_invalid_event(path: str) -> None:
    document = with_path(user_registered_document(), path, "0001-01-01T00:30:00+01:00")

    assert reason(document) == f"{path}: not an RFC 3339 date-time"


# --- properties -------------------------------------------------------------------------------

uuid_texts = st.uuids().map(str)
not_canonical_uuids = st.one_of(
    st.text(max_size=40),
    st.tuples(uuid_texts, st.sampled_from(["\n", " ", "\t", "0", "x", "}"])).map(lambda t: t[0] + t[1]),
    st.tuples(st.sampled_from(["\n", " ", "{", "urn:uuid:", "0"]), uuid_texts).map(lambda t: t[0] + t[1]),
    uuid_texts.map(lambda u: "{" + u + "}"),
    uuid_texts.map(lambda u: u.replace("-", "")),
    st.tuples(uuid_texts, st.integers(0, 35)).map(lambda t: t[0][: t[1]] + t[0][t[1] + 1 :]),
    st.tuples(uuid_texts, st.integers(0, 35), st.characters()).map(lambda t: t[0][: t[1]] + t[2] + t[0][t[1] + 1 :]),
).filter(lambda text: not CANONICAL_UUID.fullmatch(text))


@given(text=not_canonical_uuids)
def test_a_user_id_that_is_not_a_canonical_uuid_is_never_accepted(text: str) -> None:
    document = user_registered_document(payload__userId=text)

    with pytest.raises((InvalidEvent, ValueError)):
        parse_user_registered(document)


@given(text=not_canonical_uuids)
@example(text="01941234-5678-7abc-def0-123456789abc\n")
def test_a_user_id_that_is_not_a_canonical_uuid_is_rejected_as_an_invalid_event(text: str) -> None:
    message = reason(user_registered_document(payload__userId=text))

    assert message in (
        "payload.userId: not a UUID",
        "payload.userId: empty",
        "payload.userId: contains a NUL character",
        "payload.userId: not valid Unicode (an unpaired surrogate)",
    )


# names: any printable text (control characters are refused, see the test below)
printable = st.characters(blacklist_categories=("Cc", "Cs"))
name_cores = st.text(printable, min_size=1, max_size=50).filter(lambda s: s.strip() == s and s != "")
long_name_cores = st.text(printable, min_size=51, max_size=120).filter(lambda s: len(s.strip()) > 50)
padding = st.text(alphabet=" \t\n\u00a0\u3000", max_size=3)


@given(core=name_cores, before=padding, after=padding)
def test_any_name_of_1_to_50_characters_after_trimming_is_accepted_trimmed(core: str, before: str, after: str) -> None:
    user = parse_user_registered(
        user_registered_document(payload__firstName=before + core + after, payload__lastName=after + core + before)
    )

    assert user.first_name == core
    assert user.last_name == core


@given(core=long_name_cores, which=st.sampled_from(["firstName", "lastName"]))
def test_any_name_longer_than_50_characters_after_trimming_is_rejected(core: str, which: str) -> None:
    message = reason(user_registered_document(**{f"payload__{which}": core}))

    assert message == f"payload.{which}: longer than 50 characters"


@given(
    blank=st.text(alphabet=" \t\r\n\u00a0\u2003\u3000", max_size=10), which=st.sampled_from(["firstName", "lastName"])
)
def test_any_blank_name_is_rejected(blank: str, which: str) -> None:
    message = reason(user_registered_document(**{f"payload__{which}": blank}))

    assert message == f"payload.{which}: empty or only whitespace"


local_parts = st.text(alphabet=string.ascii_letters + string.digits + ".!#$%&'*+/=?^_`{|}~-", min_size=1, max_size=30)
labels = st.text(alphabet=string.ascii_lowercase + string.digits, min_size=1, max_size=12)
emails = st.builds(
    lambda local, domain, tld: f"{local}@{'.'.join(domain)}.{tld}",
    local_parts,
    st.lists(labels, min_size=1, max_size=3),
    st.text(alphabet=string.ascii_lowercase, min_size=2, max_size=6),
)
moments = st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m))),
)


@given(
    event_id=st.uuids(),
    user_id=st.uuids(),
    correlation_id=st.none() | st.uuids(),
    causation_id=st.none() | st.uuids(),
    timestamp=moments,
    registered_at=st.none() | moments,
    email=emails,
    first_name=name_cores,
    last_name=name_cores,
    opt_in=st.none() | st.booleans(),
)
def test_any_valid_event_parses_and_keeps_its_fields(
    event_id: UUID,
    user_id: UUID,
    correlation_id: UUID | None,
    causation_id: UUID | None,
    timestamp: datetime,
    registered_at: datetime | None,
    email: str,
    first_name: str,
    last_name: str,
    opt_in: bool | None,
) -> None:
    document: dict[str, Any] = {
        "eventId": str(event_id),
        "eventType": "UserRegistered",
        "eventVersion": "1.0",
        "timestamp": timestamp.isoformat(),
        "aggregateId": str(user_id),
        "aggregateType": "User",
        "payload": {"userId": str(user_id), "email": email, "firstName": first_name, "lastName": last_name},
    }
    if correlation_id is not None:
        document["correlationId"] = str(correlation_id)
    if causation_id is not None:
        document["causationId"] = str(causation_id)
    if registered_at is not None:
        document["payload"]["registeredAt"] = registered_at.isoformat()
    if opt_in is not None:
        document["payload"]["marketingOptIn"] = opt_in

    user = parse_user_registered(document)

    assert user.event_id == event_id
    assert user.user_id == user_id
    assert user.correlation_id == (correlation_id or event_id)
    assert user.causation_id == causation_id
    assert user.timestamp == timestamp
    assert user.registered_at == (registered_at or timestamp)
    assert user.registered_at.utcoffset() == timedelta(0)
    assert user.email == email
    assert (user.first_name, user.last_name) == (first_name, last_name)
    assert user.marketing_opt_in is bool(opt_in)


@pytest.mark.parametrize("which", ["firstName", "lastName"])
def test_a_name_with_control_characters_is_rejected(which: str) -> None:
    with pytest.raises(InvalidEvent) as raised:
        parse_user_registered(user_registered_document(**{f"payload__{which}": "Ja\x1bne"}))
    assert str(raised.value) == f"payload.{which}: contains control characters"


@pytest.mark.parametrize(
    ("field", "path"),
    [
        ("payload__firstName", "payload.firstName"),
        ("payload__lastName", "payload.lastName"),
        ("payload__email", "payload.email"),
        ("eventType", "eventType"),
        ("aggregateType", "aggregateType"),
        ("aggregateId", "aggregateId"),
        ("eventVersion", "eventVersion"),
    ],
)
@pytest.mark.parametrize(
    ("text", "problem"),
    [("Ja\ud800ne", "not valid Unicode (an unpaired surrogate)"), ("Ja\x00ne", "contains a NUL character")],
)
def test_text_no_store_can_hold_is_rejected_naming_the_field_not_the_value(
    field: str, path: str, text: str, problem: str
) -> None:
    with pytest.raises(InvalidEvent) as raised:
        parse_user_registered(user_registered_document(**{field: text}))
    assert str(raised.value) == f"{path}: {problem}"
