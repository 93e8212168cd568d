"""The publisher's contract (CustomerRegistered out, dead letters aside), run against the fake and Kafka.

A subclass provides the ``publisher`` fixture and two readers of what reached "Kafka": the
fake reads its own lists, the real one reads the topics back.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from acme_customer.errors import InvalidEvent
from tests.contracts.unit_of_work import fresh_month, registration


@dataclass(frozen=True)
class Published:
    key: bytes | None
    event_id: str


@dataclass(frozen=True)
class Letter:
    topic: str
    key: bytes | None
    value: bytes | None
    own_headers: list[tuple[str, bytes | None]]  # the original record's, without the x- ones
    error_class: str
    error_message: str
    attempts: int


class PublisherContract:
    """What every publisher does; subclasses give ``publisher``, ``published`` and ``dead_letters``."""

    scratch_topic: str  # an input topic of the subclass's own, with its .dlq

    async def published(self, publisher: Any, customer_ids: list[str]) -> list[Published]:
        raise NotImplementedError

    async def dead_letters(self, publisher: Any, keys: list[bytes]) -> list[Letter]:
        raise NotImplementedError

    async def test_events_are_published_keyed_by_customer_id(self, publisher: Any) -> None:
        events = [registration(fresh_month(), n)[1] for n in (1, 2)]
        envelopes = [event.to_dict() for event in events]

        await publisher.publish_customer_registered(events)

        found = await self.published(publisher, [envelope["aggregateId"] for envelope in envelopes])
        assert sorted(found, key=lambda item: item.event_id) == sorted(
            (Published(envelope["aggregateId"].encode(), envelope["eventId"]) for envelope in envelopes),
            key=lambda item: item.event_id,
        )

    async def test_a_dead_letter_keeps_the_original_bytes_and_headers_and_says_why(self, publisher: Any) -> None:
        key = f"k-{uuid.uuid4().hex}".encode()
        headers: list[tuple[str, bytes | None]] = [("traceparent", None), ("binary", b"\xff\x00")]

        await publisher.dead_letter(
            key, b"\xfe not json", (self.scratch_topic, 3, 41), InvalidEvent("value: not Avro or JSON"), 1, headers
        )

        assert await self.dead_letters(publisher, [key]) == [
            Letter(
                f"{self.scratch_topic}.dlq",
                key,
                b"\xfe not json",
                headers,
                "InvalidEvent",
                "value: not Avro or JSON",
                1,
            )
        ]

    async def test_a_record_with_neither_key_nor_value_is_dead_lettered_with_an_empty_key(self, publisher: Any) -> None:
        marker = uuid.uuid4().hex.encode()
        await publisher.dead_letter(
            None, None, (self.scratch_topic, 0, 7), InvalidEvent("value: null (a tombstone)"), 1, [("m", marker)]
        )

        letters = [
            letter for letter in await self.dead_letters(publisher, [b""]) if letter.own_headers == [("m", marker)]
        ]
        assert [(letter.key, letter.value) for letter in letters] == [(b"", None)]
