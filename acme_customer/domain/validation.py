"""Validation of incoming identity events, with reasons a person can act on.

Every failure raises :class:`InvalidEvent` whose message names the field path and the
problem, e.g. ``payload.email: not an email address``. Messages never contain the
offending value (it may be personal data).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

from acme_customer.domain.clock import parse_rfc3339
from acme_customer.domain.events import USER_REGISTERED, UserRegistered
from acme_customer.errors import InvalidEvent

MAX_EMAIL_LENGTH = 255
MAX_NAME_LENGTH = 50
SUPPORTED_MAJOR_VERSION = "1"

# The WHATWG "valid e-mail address" rule, with at least one dot in the domain.
# (used with fullmatch: "$" alone would accept a trailing newline)
_EMAIL = re.compile(
    r"[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}"
    r"@[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
    r"(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)+"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def event_type_of(document: object) -> str:
    """The ``eventType`` of a decoded event, so that other types can be skipped early."""
    if not isinstance(document, Mapping):
        raise InvalidEvent(f"event: expected a JSON object, got {_kind(document)}")
    return _string(document, "eventType", "eventType")


def parse_user_registered(document: object) -> UserRegistered:
    """Validate a decoded ``UserRegistered`` and return it; raise InvalidEvent with the reason."""
    if not isinstance(document, Mapping):
        raise InvalidEvent(f"event: expected a JSON object, got {_kind(document)}")
    event_type = _string(document, "eventType", "eventType")
    if event_type != USER_REGISTERED:
        raise InvalidEvent(f"eventType: expected {USER_REGISTERED!r}")
    version = _string(document, "eventVersion", "eventVersion")
    if version.split(".")[0] != SUPPORTED_MAJOR_VERSION:
        raise InvalidEvent(f"eventVersion: unsupported major version (this service reads {SUPPORTED_MAJOR_VERSION}.x)")
    event_id = _uuid(document, "eventId", "eventId")
    timestamp = _timestamp(document, "timestamp", "timestamp")
    _string(document, "aggregateType", "aggregateType")
    _string(document, "aggregateId", "aggregateId")
    correlation_id = _optional_uuid(document, "correlationId", "correlationId") or event_id
    causation_id = _optional_uuid(document, "causationId", "causationId")

    payload = document.get("payload")
    if payload is None:
        raise InvalidEvent("payload: missing")
    if not isinstance(payload, Mapping):
        raise InvalidEvent(f"payload: expected an object, got {_kind(payload)}")
    user_id = _uuid(payload, "userId", "payload.userId")
    email = _email(payload)
    first_name = _name(payload, "firstName")
    last_name = _name(payload, "lastName")
    marketing_opt_in = payload.get("marketingOptIn", False)
    if marketing_opt_in is None:
        marketing_opt_in = False
    if not isinstance(marketing_opt_in, bool):
        raise InvalidEvent(f"payload.marketingOptIn: expected a boolean, got {_kind(marketing_opt_in)}")
    registered_at = (
        _timestamp(payload, "registeredAt", "payload.registeredAt")
        if payload.get("registeredAt") is not None
        else timestamp
    )
    return UserRegistered(
        event_id=event_id,
        timestamp=timestamp,
        correlation_id=correlation_id,
        causation_id=causation_id,
        user_id=user_id,
        email=email,
        first_name=first_name,
        last_name=last_name,
        marketing_opt_in=marketing_opt_in,
        registered_at=registered_at,
    )


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
    }.get(type(value), type(value).__name__)


def _string(source: Mapping[str, Any], key: str, path: str) -> str:
    if key not in source or source[key] is None:
        raise InvalidEvent(f"{path}: missing")
    value = source[key]
    if not isinstance(value, str):
        raise InvalidEvent(f"{path}: expected a string, got {_kind(value)}")
    _storable(value, path)
    if not value.strip():
        raise InvalidEvent(f"{path}: empty")
    return value


def _storable(text: str, path: str) -> None:
    """Refuse text that PostgreSQL, BSON or Avro cannot hold, before it reaches a driver.

    JSON can carry a lone UTF-16 surrogate (``"\\ud800"``), which no UTF-8 encoder takes, and
    NUL, which PostgreSQL text refuses: both would otherwise fail deep in a driver.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidEvent(f"{path}: not valid Unicode (an unpaired surrogate)") from None
    if "\x00" in text:
        raise InvalidEvent(f"{path}: contains a NUL character")


_UUID = re.compile(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")


def _uuid(source: Mapping[str, Any], key: str, path: str) -> UUID:
    text = _string(source, key, path)
    # only the canonical hyphenated form: UUID() alone would also take braces and "urn:uuid:"
    if not _UUID.fullmatch(text):
        raise InvalidEvent(f"{path}: not a UUID")
    return UUID(text)


def _optional_uuid(source: Mapping[str, Any], key: str, path: str) -> UUID | None:
    if source.get(key) is None:
        return None
    return _uuid(source, key, path)


def _timestamp(source: Mapping[str, Any], key: str, path: str) -> datetime:
    text = _string(source, key, path)
    try:
        return parse_rfc3339(text)
    except ValueError:
        raise InvalidEvent(f"{path}: not an RFC 3339 date-time") from None


def _email(payload: Mapping[str, Any]) -> str:
    email = _string(payload, "email", "payload.email").strip()
    if len(email) > MAX_EMAIL_LENGTH:
        raise InvalidEvent(f"payload.email: longer than {MAX_EMAIL_LENGTH} characters")
    if not _EMAIL.fullmatch(email):
        raise InvalidEvent("payload.email: not an email address")
    return email


def _name(payload: Mapping[str, Any], key: str) -> str:
    path = f"payload.{key}"
    if key not in payload or payload[key] is None:
        raise InvalidEvent(f"{path}: missing")
    value = payload[key]
    if not isinstance(value, str):
        raise InvalidEvent(f"{path}: expected a string, got {_kind(value)}")
    _storable(value, path)
    trimmed = value.strip()
    if not trimmed:
        raise InvalidEvent(f"{path}: empty or only whitespace")
    if len(trimmed) > MAX_NAME_LENGTH:
        raise InvalidEvent(f"{path}: longer than {MAX_NAME_LENGTH} characters")
    if _CONTROL.search(trimmed):
        raise InvalidEvent(f"{path}: contains control characters")
    return trimmed
