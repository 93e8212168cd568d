"""Consumed Kafka messages as ``Record`` values, whatever shape Kafka delivered them in.

Kafka allows a null key, a null value (a tombstone), null header values, and header names
the client could not read as text. None of these may surface as an exception in an agent:
an exception there crashes the agent, its batch is never acknowledged and every restart
redelivers it (a poison pill). So this edge turns whatever arrived into plain data, and the
handlers decide what becomes of it (mostly: the DLQ, with a reason).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

Header = tuple[str, bytes | None]  # Kafka allows a null header value


@dataclass(frozen=True)
class Record:
    """A consumed Kafka record, independent of the client library."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[Header]

    @property
    def origin(self) -> tuple[str, int, int]:
        return (self.topic, self.partition, self.offset)


def record_of(message: Any) -> Record:
    """The ``Record`` for one consumed message (Faust's ``Message`` or anything shaped like it)."""
    return Record(
        topic=str(message.topic),
        partition=int(message.partition),
        offset=int(message.offset),
        key=_bytes_or_none(message.key),
        value=_bytes_or_none(message.value),
        headers=headers_of(message.headers),
    )


def headers_of(headers: Iterable[Any] | Any) -> list[Header]:
    """Header (name, value) pairs: names as text, values as bytes or None (Kafka allows null)."""
    if not headers:
        return []
    if isinstance(headers, dict):
        headers = headers.items()
    pairs: list[Header] = []
    for header in headers:
        try:
            name, value = header
        except (TypeError, ValueError):  # not a pair: nothing we can forward faithfully
            continue
        pairs.append((_name(name), _bytes_or_none(value)))
    return pairs


def _name(name: Any) -> str:
    if isinstance(name, str):
        return name
    if isinstance(name, (bytes, bytearray, memoryview)):
        # replaced, not escaped: the name must encode again when the record is dead-lettered
        return bytes(name).decode("utf-8", errors="replace")
    return str(name)


def _bytes_or_none(value: Any) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):  # a serializer upstream decoded it: give the bytes back
        return value.encode("utf-8", errors="surrogateescape")
    return str(value).encode("utf-8", errors="surrogateescape")
