"""One trace from the identity service to the read model: traceparent in, spans, traceparent out, projection.

The register flow is driven as the agent drives it (``consuming`` around ``PartitionLanes.submit``)
with the real handler and the real KafkaPublisher over a fake producer; the headers it writes
are fed to the projector. Records carry every shape of ``traceparent`` Kafka can deliver.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from acme_customer.adapters.kafka import MESSAGE_SPAN, KafkaPublisher
from acme_customer.errors import StoreUnavailable
from acme_customer.stream.lanes import Delivery, PartitionLanes
from acme_customer.stream.records import Header, Record, context_of
from acme_customer.stream.register_customer import RegisterCustomerHandler
from acme_customer.stream.trace_context import causes, causes_of, consuming
from tests.spans import assert_no_pii, named, only, parent_id
from tests.unit.builders import STORY_MOMENT
from tests.unit.fakes import FakeCustomerStore, FakeProducer, FakeProfiles, FakePublisher, FakeReadModel
from tests.unit.stream_builders import (
    CUSTOMER_TOPIC,
    IDENTITY_TOPIC,
    NO_WAIT,
    decode,
    encode_json_async,
    event_id,
    make_projector,
    record,
    user_document,
)

REPO = Path(__file__).resolve().parents[2]
CONSUME = "consume_user_registered_event"
# the identity service's spans, as its traceparent headers name them
TRACE_A, SPAN_A = 0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331
TRACE_B, SPAN_B = 0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7


def traceparent(trace_id: int, span_id: int, flags: int = 1) -> bytes:
    return f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}".encode()


def with_headers(consumed: Record, headers: list[Header]) -> Record:
    return dataclasses.replace(consumed, headers=headers)


def user_record(n: int, headers: list[Header]) -> Record:
    """A valid UserRegistered of user ``n`` (its email: user<n>@example.com), with exactly ``headers``."""
    return with_headers(record(user_document(n), offset=100 + n), headers)


# the shapes of traceparent that carry no usable context: none may break anything
NO_CONTEXT: dict[str, list[Header]] = {
    "no header": [],
    "null value": [("traceparent", None)],
    "binary value": [("traceparent", b"\xff\xfe\x00\x81")],
    "not W3C": [("traceparent", b"trace-7")],
    "all-zero trace id": [("traceparent", traceparent(0, SPAN_A))],
    "all-zero span id": [("traceparent", traceparent(TRACE_A, 0))],
    "version ff": [("traceparent", b"ff-" + traceparent(TRACE_A, SPAN_A)[3:])],
    "truncated": [("traceparent", traceparent(TRACE_A, SPAN_A)[:40])],
}


class Registration:
    """The register flow as the agent runs it, over fakes, with the real publisher writing headers."""

    def __init__(self) -> None:
        self.store = FakeCustomerStore()
        self.producer = FakeProducer()
        self.dead_letters = FakePublisher()
        self.acked: list[tuple[str, int, int]] = []
        handler = RegisterCustomerHandler(
            store=self.store,
            publisher=KafkaPublisher(self.producer, encode_json_async, ack_timeout_s=5),
            decode=decode,
            backoff=NO_WAIT,
            dead_letters=self.dead_letters,
            now=lambda: STORY_MOMENT,
        )
        self.lanes = PartitionLanes(handler, NO_WAIT, batch_size=100)

    async def consume(self, records: Sequence[Record]) -> None:
        """One batch, as the agent ``register_customer`` consumes it (app.py)."""
        deliveries = [Delivery(consumed, self._acker(consumed)) for consumed in records]
        with consuming(CONSUME, IDENTITY_TOPIC, records):
            await self.lanes.submit(deliveries)

    def _acker(self, consumed: Record) -> Any:
        async def ack() -> None:
            self.acked.append(consumed.origin)

        return ack

    def published(self) -> list[Record]:
        """What reached customer.events, as the projector consumes it."""
        return [
            Record(CUSTOMER_TOPIC, 0, offset, sent["key"], sent["value"], sent["headers"])
            for offset, sent in enumerate(self.producer.sent)
            if sent["topic"] == CUSTOMER_TOPIC
        ]

    def published_for(self, n: int) -> Record:
        """The CustomerRegistered record caused by user ``n``'s UserRegistered."""
        (found,) = [
            published
            for published in self.published()
            if json.loads(published.value or b"{}")["causationId"] == str(event_id(n))
        ]
        return found

    async def project(self, records: Sequence[Record]) -> FakeReadModel:
        read_model = FakeReadModel()
        await make_projector(FakeProfiles(self.store.customers), read_model).handle(records)
        return read_model


def header_context(published: Record) -> tuple[int, int]:
    """(trace id, parent span id) of a record's traceparent header."""
    (value,) = [value for name, value in published.headers if name == "traceparent"]
    assert value is not None
    version, trace_id, span_id, flags = value.decode().split("-")
    assert version == "00"
    assert int(flags, 16) & 0x01  # sampled (the SDK may add 0x02: a random trace id, W3C level 2)
    return int(trace_id, 16), int(span_id, 16)


def linked(span: ReadableSpan) -> set[tuple[int, int]]:
    return {(link.context.trace_id, link.context.span_id) for link in span.links}


def personal_data(*users: int) -> list[str]:
    return [text for n in users for text in (f"user{n}@example.com", "Jane", "Doe")]


# --- reading a record's context -----------------------------------------------------------------


def test_a_w3c_traceparent_is_the_records_remote_context() -> None:
    consumed = user_record(1, [("eventType", b"UserRegistered"), ("traceparent", traceparent(TRACE_A, SPAN_A))])

    context = consumed.trace_context

    assert context is not None
    assert consumed.trace_context is context  # read once, however often a retry asks
    span_context = trace.get_current_span(context).get_span_context()
    assert (span_context.trace_id, span_context.span_id) == (TRACE_A, SPAN_A)
    assert span_context.is_remote
    assert span_context.trace_flags.sampled


@pytest.mark.parametrize("headers", list(NO_CONTEXT.values()), ids=list(NO_CONTEXT))
def test_a_missing_null_binary_or_malformed_traceparent_is_no_context(headers: list[Header]) -> None:
    assert context_of(headers) is None


def test_other_headers_that_are_null_or_binary_do_not_hide_a_valid_traceparent() -> None:
    headers: list[Header] = [("x", None), ("y", b"\xff"), ("traceparent", traceparent(TRACE_B, SPAN_B))]

    context = context_of(headers)

    assert context is not None
    assert trace.get_current_span(context).get_span_context().trace_id == TRACE_B


def test_of_two_traceparent_headers_the_first_counts() -> None:
    headers: list[Header] = [
        ("traceparent", traceparent(TRACE_A, SPAN_A)),
        ("traceparent", traceparent(TRACE_B, SPAN_B)),
    ]

    context = context_of(headers)

    assert context is not None
    assert trace.get_current_span(context).get_span_context().trace_id == TRACE_A


# --- the batch rule: one record is the parent, several are links --------------------------------


def test_a_batch_of_one_record_with_a_context_is_its_child() -> None:
    context = context_of([("traceparent", traceparent(TRACE_A, SPAN_A))])

    batch = causes([context])

    assert batch.parent is context
    assert batch.links == ()


@pytest.mark.parametrize("contexts", [[], [None], [None, None]], ids=["empty", "one without", "two without"])
def test_a_batch_without_any_context_starts_where_it_is_without_links(contexts: list[Any]) -> None:
    assert causes(contexts) == causes([])
    assert causes(contexts).parent is None
    assert causes(contexts).links == ()


def test_a_batch_of_several_records_links_each_valid_context_once_and_skips_the_rest() -> None:
    records = [
        user_record(1, [("traceparent", traceparent(TRACE_A, SPAN_A))]),
        *(user_record(2 + index, headers) for index, headers in enumerate(NO_CONTEXT.values())),
        user_record(20, [("traceparent", traceparent(TRACE_B, SPAN_B))]),
    ]

    batch = causes_of(records)

    assert batch.parent is None
    assert [(link.context.trace_id, link.context.span_id) for link in batch.links] == [
        (TRACE_A, SPAN_A),
        (TRACE_B, SPAN_B),
    ]


# --- consume_user_registered_event and its children ---------------------------------------------


async def test_a_single_record_batch_continues_the_identity_trace_down_to_the_read_model(
    spans: InMemorySpanExporter,
) -> None:
    registration = Registration()

    await registration.consume([user_record(1, [("traceparent", traceparent(TRACE_A, SPAN_A))])])
    finished = spans.get_finished_spans()

    consume = only(finished, CONSUME)
    assert consume.context.trace_id == TRACE_A
    assert parent_id(consume) == SPAN_A
    assert consume.parent is not None and consume.parent.is_remote
    assert consume.links == ()
    assert consume.kind is SpanKind.CONSUMER
    assert dict(consume.attributes or {}) == {
        "messaging.system": "kafka",
        "messaging.source.name": IDENTITY_TOPIC,
        "messaging.batch.message_count": 1,
    }
    profile = only(finished, "create_customer_profile")
    number = only(finished, "generate_customer_number")
    publish = only(finished, "publish_customer_registered")
    assert parent_id(profile) == consume.context.span_id
    assert parent_id(number) == profile.context.span_id
    assert parent_id(publish) == consume.context.span_id
    assert {span.context.trace_id for span in finished} == {TRACE_A}
    # the publish span is in the identity trace already: the record's header names it, no extra span
    assert named(finished, MESSAGE_SPAN) == []
    (published,) = registration.published()
    assert header_context(published) == (TRACE_A, publish.context.span_id)

    spans.clear()
    read_model = await registration.project([published])

    assert len(read_model.documents) == 1
    projection = only(spans.get_finished_spans(), "project_read_model")
    assert projection.context.trace_id == TRACE_A
    assert parent_id(projection) == publish.context.span_id
    assert projection.links == ()
    assert_no_pii([*finished, projection], personal_data(1))


async def test_a_batch_of_several_records_links_their_traces_and_each_event_continues_its_own(
    spans: InMemorySpanExporter,
) -> None:
    registration = Registration()
    without = list(NO_CONTEXT.values())
    records = [
        user_record(1, [("traceparent", traceparent(TRACE_A, SPAN_A))]),
        user_record(2, [("traceparent", traceparent(TRACE_B, SPAN_B))]),
        *(user_record(3 + index, headers) for index, headers in enumerate(without)),
    ]

    await registration.consume(records)
    finished = spans.get_finished_spans()

    # nothing broke: every record became a customer and was acknowledged
    assert len(registration.store.customers) == len(records)
    assert sorted(registration.acked) == sorted(consumed.origin for consumed in records)
    assert registration.dead_letters.dead_letters == []
    consume = only(finished, CONSUME)
    assert consume.parent is None
    assert consume.context.trace_id not in (TRACE_A, TRACE_B)
    assert linked(consume) == {(TRACE_A, SPAN_A), (TRACE_B, SPAN_B)}
    assert consume.attributes is not None
    assert consume.attributes["messaging.batch.message_count"] == len(records)
    publish = only(finished, "publish_customer_registered")
    assert parent_id(publish) == consume.context.span_id

    # one message span per event whose input carried a trace, in that trace, linked to the publish
    messages = {span.context.trace_id: span for span in named(finished, MESSAGE_SPAN)}
    assert set(messages) == {TRACE_A, TRACE_B}
    assert parent_id(messages[TRACE_A]) == SPAN_A
    assert parent_id(messages[TRACE_B]) == SPAN_B
    for message in messages.values():
        assert message.kind is SpanKind.PRODUCER
        assert linked(message) == {(publish.context.trace_id, publish.context.span_id)}
        assert message.attributes is not None
        assert message.attributes["messaging.destination.name"] == CUSTOMER_TOPIC
        assert message.attributes["messaging.operation.type"] == "create"
    a_out, b_out = registration.published_for(1), registration.published_for(2)
    assert header_context(a_out) == (TRACE_A, messages[TRACE_A].context.span_id)
    assert header_context(b_out) == (TRACE_B, messages[TRACE_B].context.span_id)
    assert messages[TRACE_A].attributes["messaging.message.id"] == json.loads(a_out.value or b"")["eventId"]
    # an event whose input carried none continues the batch's trace
    for n in range(3, 3 + len(without)):
        assert header_context(registration.published_for(n)) == (consume.context.trace_id, publish.context.span_id)
    assert_no_pii(finished, personal_data(*range(1, 3 + len(without))))

    # the projector, fed user 1's event alone: one trace from the identity service to the read model
    spans.clear()
    await registration.project([a_out])
    projection = only(spans.get_finished_spans(), "project_read_model")
    assert projection.context.trace_id == TRACE_A
    assert parent_id(projection) == messages[TRACE_A].context.span_id

    # ... fed them all in one batch: a span of its own, linked to each event's trace
    spans.clear()
    everything = registration.published()
    await registration.project(everything)
    projection = only(spans.get_finished_spans(), "project_read_model")
    assert projection.parent is None
    assert linked(projection) == {header_context(published) for published in everything}
    assert {trace_id for trace_id, _ in linked(projection)} == {TRACE_A, TRACE_B, consume.context.trace_id}
    assert len(projection.links) == len(everything)
    assert_no_pii([projection], personal_data(*range(1, 3 + len(without))))


async def test_a_single_record_without_a_context_starts_a_trace_of_its_own(spans: InMemorySpanExporter) -> None:
    registration = Registration()

    await registration.consume([user_record(1, NO_CONTEXT["binary value"])])

    finished = spans.get_finished_spans()
    consume = only(finished, CONSUME)
    assert consume.parent is None
    assert consume.links == ()
    publish = only(finished, "publish_customer_registered")
    (published,) = registration.published()
    assert header_context(published) == (consume.context.trace_id, publish.context.span_id)
    assert named(finished, MESSAGE_SPAN) == []


async def test_a_retried_batch_still_writes_each_event_in_its_inputs_trace(spans: InMemorySpanExporter) -> None:
    """The attempt that finally publishes runs in a partition lane, after the consume span ended."""
    registration = Registration()
    registration.store.failures.fail("commit", StoreUnavailable("PostgreSQL unavailable: OperationalError"))
    records = [
        user_record(1, [("traceparent", traceparent(TRACE_A, SPAN_A))]),
        user_record(2, [("traceparent", traceparent(TRACE_B, SPAN_B))]),
    ]

    await registration.consume(records)
    await registration.lanes.wait_idle()

    assert registration.store.failures.raised["commit"] == 1
    assert header_context(registration.published_for(1))[0] == TRACE_A
    assert header_context(registration.published_for(2))[0] == TRACE_B
    consume = only(spans.get_finished_spans(), CONSUME)
    profiles = named(spans.get_finished_spans(), "create_customer_profile")
    assert len(profiles) == 2  # the failed attempt and the retry, both within the batch's trace
    assert {parent_id(profile) for profile in profiles} == {consume.context.span_id}


async def test_the_publisher_is_given_each_events_input_trace_under_the_events_own_id() -> None:
    """The use case hands the publisher the input's context under the CustomerRegistered's eventId."""
    store, publisher = FakeCustomerStore(), FakePublisher()
    handler = RegisterCustomerHandler(
        store=store, publisher=publisher, decode=decode, backoff=NO_WAIT, dead_letters=publisher
    )
    records = [
        user_record(1, [("traceparent", traceparent(TRACE_A, SPAN_A))]),
        user_record(2, []),
    ]

    await handler.handle(records)

    (traces,) = publisher.traces
    by_causation = {envelope["causationId"]: UUID(envelope["eventId"]) for envelope in publisher.published}
    assert set(traces) == {by_causation[str(event_id(1))]}
    context = traces[by_causation[str(event_id(1))]]
    assert trace.get_current_span(context).get_span_context().trace_id == TRACE_A


def test_without_an_sdk_each_event_still_carries_its_inputs_traceparent() -> None:
    """No OTEL_TRACES_EXPORTER, no SDK: the spans are no-ops, the context still passes (a separate process)."""
    script = "\n".join(
        [
            "import asyncio, json",
            "from opentelemetry import trace",
            "from opentelemetry.sdk.trace import TracerProvider",
            "from tests.unit.test_trace_continuation import Registration, user_record, traceparent, NO_CONTEXT",
            "from tests.unit.test_trace_continuation import TRACE_A, SPAN_A, TRACE_B, SPAN_B",
            "assert not isinstance(trace.get_tracer_provider(), TracerProvider)",
            "single, several = Registration(), Registration()",
            "asyncio.run(single.consume([user_record(1, [('traceparent', traceparent(TRACE_A, SPAN_A))])]))",
            "asyncio.run(several.consume([",
            "    user_record(2, [('traceparent', traceparent(TRACE_A, SPAN_A))]),",
            "    user_record(3, [('traceparent', traceparent(TRACE_B, SPAN_B))]),",
            "    user_record(4, NO_CONTEXT['not W3C']),",
            "]))",
            "headers = lambda published: dict((k, v.decode()) for k, v in published.headers if v is not None)",
            "print(json.dumps({",
            "    'single': headers(single.published_for(1)).get('traceparent'),",
            "    'several': [headers(several.published_for(n)).get('traceparent') for n in (2, 3, 4)],",
            "}))",
        ]
    )
    env = {name: value for name, value in os.environ.items() if not name.startswith("OTEL_")}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False
    )

    assert result.returncode == 0, result.stderr
    written = json.loads(result.stdout)
    assert written == {
        "single": traceparent(TRACE_A, SPAN_A).decode(),
        "several": [traceparent(TRACE_A, SPAN_A).decode(), traceparent(TRACE_B, SPAN_B).decode(), None],
    }
