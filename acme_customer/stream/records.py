"""Consumed Kafka messages as ``Record`` values, whatever shape Kafka delivered them in.

Kafka allows a null key, a null value (a tombstone), null header values, and header names
the client could not read as text. None of these may surface as an exception in an agent:
an exception there crashes the agent, its batch is never acknowledged and every restart
redelivers it (a poison pill). So this edge turns whatever arrived into plain data, and the
handlers decide what becomes of it (mostly: the DLQ, with a reason). The same holds for the
W3C ``traceparent`` a record carries (``Record.trace_context``): one Kafka cannot deliver as
valid text is no context, not an error.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagate import extract

Header = tuple[str, bytes | None]  # Kafka allows a null header value
TRACEPARENT = "traceparent"


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

    @cached_property
    def trace_context(self) -> Context | None:
        """The trace context the record's headers carry, or None (read once: a retry asks again)."""
        return context_of(self.headers)


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


def context_of(headers: Sequence[Header]) -> Context | None:
    """The trace context in ``headers`` (W3C ``traceparent``), or None when they carry no valid one."""
    carrier: dict[str, str] = {}
    for name, value in headers:
        if value is None or name in carrier:  # Kafka allows repeated names: the first readable one counts
            continue
        try:
            carrier[name] = value.decode("utf-8")
        except UnicodeDecodeError:
            continue
    if TRACEPARENT not in carrier:
        return None
    try:
        context = extract(carrier)
    except Exception:  # deliberately broad: OTEL_PROPAGATORS may name any propagator; no header may stop a batch
        return None
    return context if trace.get_current_span(context).get_span_context().is_valid else None


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
