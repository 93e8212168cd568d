"""The stream edge: whatever shape Kafka delivers a record in, the handlers get plain data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from acme_customer.stream.records import headers_of, record_of


@dataclass
class Message:
    """Shaped like the message Faust hands an agent."""

    key: Any = b"key"
    value: Any = b"{}"
    headers: Any = None
    topic: str = "identity.user.events"
    partition: int = 4
    offset: int = 17


def test_a_plain_message_becomes_a_record_with_its_position() -> None:
    record = record_of(Message(headers=[("traceparent", b"00-abc-01")]))

    assert record.origin == ("identity.user.events", 4, 17)
    assert (record.key, record.value, record.headers) == (b"key", b"{}", [("traceparent", b"00-abc-01")])


def test_a_null_header_value_stays_null_instead_of_raising() -> None:
    assert record_of(Message(headers=[("x-empty", None), ("x-set", b"1")])).headers == [
        ("x-empty", None),
        ("x-set", b"1"),
    ]


def test_a_null_key_and_a_tombstone_are_data() -> None:
    record = record_of(Message(key=None, value=None))

    assert (record.key, record.value) == (None, None)


@pytest.mark.parametrize("headers", [None, [], ()])
def test_no_headers_are_an_empty_list(headers: Any) -> None:
    assert record_of(Message(headers=headers)).headers == []


def test_header_names_that_are_not_utf8_are_kept_readable_and_encodable_again() -> None:
    ((name, value),) = headers_of([(b"bad\xffname", b"v")])

    assert name == "bad\ufffdname"
    assert name.encode("utf-8")  # it can be sent on with the dead letter
    assert value == b"v"


def test_buffer_values_become_bytes_and_text_values_their_utf8_bytes() -> None:
    record = record_of(Message(key=bytearray(b"k"), value=memoryview(b"v"), headers={"h": "text"}))

    assert (record.key, record.value, record.headers) == (b"k", b"v", [("h", b"text")])


def test_a_header_that_is_not_a_pair_is_dropped_rather_than_crashing_the_agent() -> None:
    assert headers_of([("ok", b"1"), ("lonely",), 42]) == [("ok", b"1")]
