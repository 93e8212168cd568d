"""Kafka output: CustomerRegistered to ``customer.events`` and dead letters to the DLQ.

Both wait for the broker's acknowledgement before returning, so that the input offset is
committed only after the output is safe.

Each CustomerRegistered carries a W3C ``traceparent`` that continues the trace of the
UserRegistered that caused it. When the ``publish_customer_registered`` span is already in
that trace (a batch of one record: stream/trace_context.py), the header names that span;
otherwise the message gets a span of its own in its cause's trace,
``create_customer_registered_message`` (linked to the batch's publish span), and the header
names it. So the projection lands in the identity service's trace either way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol
from uuid import UUID

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagate import inject
from opentelemetry.trace import Link, Span, SpanKind

from acme_customer.domain.events import CustomerRegistered
from acme_customer.errors import PublishFailed
from acme_customer.service_layer.ports import EventPublisher

CONSUMER_GROUP = "customer-service"  # also the Faust app id
CUSTOMER_EVENTS = "customer.events"
USER_EVENTS = "identity.user.events"
USER_EVENTS_DLQ = "identity.user.events.dlq"
CUSTOMER_EVENTS_DLQ = "customer.events.dlq"
# What this service's producers write with. zstd, measured on batches of our own events
# (benchmarks/codec_cost.py, docs/performance.md): 5.8x smaller at ~2 µs of CPU per event,
# where lz4 (through cramjam) gave 3.5x at ~7 µs. Needs brokers from Kafka 2.1 on.
OUTPUT_COMPRESSION = "zstd"
# Every consumer of ours (the story's consumer configuration): a record of an aborted producer
# transaction is never seen, one of an open transaction only once it commits.
READ_COMMITTED = "read_committed"
# How often clients refresh topic metadata, so that partitions added to a topic are consumed
# (and produced to) within about 30 s, without a restart: the refresh, then the group's rebalance
# (docs/operations.md, "Scale by partition count"). aiokafka's default is 5 minutes.
METADATA_MAX_AGE_MS = 10_000

MESSAGE_SPAN = "create_customer_registered_message"

tracer = trace.get_tracer("acme_customer")
Headers = list[tuple[str, bytes | None]]  # Kafka allows a null header value
OutgoingRecord = tuple[bytes | None, bytes | None, Headers]  # key, value, headers


def dead_letter_topic(topic: str) -> str:
    """The DLQ of an input topic: ``<topic>.dlq`` (identity.user.events.dlq, customer.events.dlq)."""
    return f"{topic}.dlq"


class Producer(Protocol):
    """The part of Faust's producer that we use."""

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: Any,
    ) -> Awaitable[Any]: ...


class KafkaPublisher(EventPublisher):
    def __init__(
        self,
        producer: Producer,
        encode: Callable[[dict[str, Any]], Awaitable[bytes]],
        ack_timeout_s: float = 30.0,
    ):
        self.producer = producer
        self.encode = encode  # CustomerRegistered in the configured EVENT_FORMAT
        self.ack_timeout_s = ack_timeout_s

    async def _send_all(self, topic: str, records: Sequence[OutgoingRecord]) -> None:
        try:
            pending = [
                await self.producer.send(topic, key, value, None, None, headers) for key, value, headers in records
            ]
            await asyncio.wait_for(asyncio.gather(*pending), timeout=self.ack_timeout_s)
        except TimeoutError as error:
            raise PublishFailed(
                f"no acknowledgement from Kafka for {topic} within {self.ack_timeout_s:.0f}s"
            ) from error
        except Exception as error:  # the driver's send errors: all retriable from our point of view
            raise PublishFailed(f"publishing to {topic} failed: {type(error).__name__}") from error

    async def publish_customer_registered(
        self, events: Sequence[CustomerRegistered], trace_of: Mapping[UUID, Context] | None = None
    ) -> None:
        """Publish the events (key = customerId) and wait until Kafka has them all.

        ``trace_of`` (by eventId): the trace each event continues (its UserRegistered's).
        """
        if not events:
            return
        traces = trace_of or {}
        with tracer.start_as_current_span("publish_customer_registered") as span:
            span.set_attribute("messaging.destination.name", CUSTOMER_EVENTS)
            span.set_attribute("messaging.batch.message_count", len(events))
            records = [await self._message(event, traces.get(event.event_id), span) for event in events]
            await self._send_all(CUSTOMER_EVENTS, records)

    async def _message(self, event: CustomerRegistered, cause: Context | None, publish: Span) -> OutgoingRecord:
        """The record of one event, its ``traceparent`` in its cause's trace (see the module docstring)."""
        if cause is None or _trace_id(cause) == publish.get_span_context().trace_id:
            return await self._record(event)
        with tracer.start_as_current_span(
            MESSAGE_SPAN,
            context=cause,
            kind=SpanKind.PRODUCER,
            links=[Link(publish.get_span_context())],
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": CUSTOMER_EVENTS,
                "messaging.operation.type": "create",
                "messaging.message.id": str(event.event_id),
            },
        ):
            return await self._record(event)

    async def _record(self, event: CustomerRegistered) -> OutgoingRecord:
        envelope = event.to_dict()
        return (envelope["aggregateId"].encode(), await self.encode(envelope), _headers(envelope))

    async def dead_letter(
        self,
        key: bytes | None,
        value: bytes | None,
        origin: tuple[str, int, int],
        error: BaseException,
        attempts: int,
        headers: Headers | None = None,
    ) -> None:
        """Send the original bytes, unchanged, to the origin topic's DLQ with the contract's headers."""
        topic, partition, offset = origin
        dlq_headers: Headers = [
            *(headers or []),  # names already text that encodes again (stream/records.py)
            ("x-error-class", type(error).__name__.encode()),
            ("x-error-message", str(error).encode()[:1000]),
            ("x-attempts", str(attempts).encode()),
            ("x-original-topic", topic.encode()),
            ("x-original-partition", str(partition).encode()),
            ("x-original-offset", str(offset).encode()),
        ]
        if key is None and value is None:
            # Kafka allows a record with neither key nor value, but aiokafka refuses to produce
            # one (an assertion, for ever): the dead letter gets an empty key instead of a null one
            key = b""
        await self._send_all(dead_letter_topic(topic), [(key, value, dlq_headers)])


def _trace_id(context: Context) -> int:
    return trace.get_current_span(context).get_span_context().trace_id


def _headers(envelope: dict[str, Any]) -> Headers:
    carrier: dict[str, str] = {}
    inject(carrier)  # W3C traceparent of the current span, when tracing is on
    return [
        ("eventType", str(envelope.get("eventType", "")).encode()),
        ("eventId", str(envelope.get("eventId", "")).encode()),
        *((name, value.encode()) for name, value in carrier.items()),
    ]
