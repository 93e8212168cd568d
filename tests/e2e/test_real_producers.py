"""Producers this project did not write: Confluent's own Python client (confluent-kafka, librdkafka).

- Kafka transactions, as a transactional identity service uses them: a record of an aborted
  transaction never becomes a customer, a committed one does, and one of an open transaction waits
  for the commit (every consumer of ours reads ``read_committed``).
- Confluent's ``AvroSerializer`` writes the UserRegistered (ours and an evolved writer with a new
  optional field), and Confluent's ``AvroDeserializer`` reads the CustomerRegistered we publish.
"""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from acme_customer.adapters.consumer_lag import GroupOffsets
from acme_customer.adapters.schemas import USER_REGISTERED, load_schema
from tests.e2e.conftest import Stack, Worker, user_registered, wait_for

pytestmark = pytest.mark.e2e

USER_EVENTS = "identity.user.events"
CUSTOMER_EVENTS = "customer.events"
PARTITION = 7  # every record of the transaction test on one partition, so that order is the log's
RUN = uuid.uuid4().hex[:10]


def _producer(stack: Stack, **config: Any) -> Producer:
    return Producer({"bootstrap.servers": stack.bootstrap, "acks": "all", **config})


def _produce(producer: Producer, event: dict[str, Any], value: bytes | None = None) -> int:
    """Send one UserRegistered to PARTITION and wait for the broker: its offset."""
    delivered: list[Any] = []
    producer.produce(
        USER_EVENTS,
        value if value is not None else json.dumps(event).encode(),
        key=event["aggregateId"].encode(),
        partition=PARTITION,
        on_delivery=lambda error, message: delivered.append(error or message),
    )
    producer.flush(30)
    (outcome,) = delivered
    assert not hasattr(outcome, "str"), f"not delivered: {outcome}"
    return int(outcome.offset())


def _customer_of(stack: Stack, event: dict[str, Any]) -> list[tuple[Any, ...]]:
    return stack.sql("SELECT customer_number FROM customers WHERE user_id = %s", (event["payload"]["userId"],))


def _committed(stack: Stack) -> int:
    async def read() -> int:
        offsets = GroupOffsets(stack.bootstrap, "customer-service")
        try:
            found = await offsets.committed([(USER_EVENTS, PARTITION)])
        finally:
            await offsets.close()
        return found[(USER_EVENTS, PARTITION)] or 0

    return asyncio.run(read())


def _caused_by(stack: Stack, since: dict[int, int], event_ids: set[str], until: str) -> list[str]:
    """The causationIds of the CustomerRegistered published since ``since``, read until ``until``'s is there."""

    def causes(records: list[Any]) -> list[str]:
        return [event["causationId"] for event in stack.decode([record.value for record in records])]

    records = stack.read_since(CUSTOMER_EVENTS, since, lambda found: until in causes(found), timeout=60)
    return [cause for cause in causes(records) if cause in event_ids]


# -- Kafka transactions --------------------------------------------------------------------------


def test_an_aborted_transaction_creates_nothing_a_committed_one_a_customer_and_an_open_one_waits(
    stack: Stack, worker: Worker
) -> None:
    aborted, committed, plain, pending = (user_registered(first_name=name) for name in ("Ab", "Co", "Pl", "Pe"))
    published_since = stack.end_offsets(CUSTOMER_EVENTS)
    transactional = _producer(stack, **{"transactional.id": f"acme-e2e-identity-{RUN}"})
    transactional.init_transactions(30)

    transactional.begin_transaction()
    _produce(transactional, aborted)
    transactional.abort_transaction(30)
    transactional.begin_transaction()
    _produce(transactional, committed)
    transactional.commit_transaction(30)
    plain_offset = _produce(_producer(stack), plain)  # no transaction, after both, before the open one
    transactional.begin_transaction()
    _produce(transactional, pending)  # written to the log, its transaction still open

    wait_for(lambda: _customer_of(stack, committed) and _customer_of(stack, plain), 60, "the committed records")
    # the group has committed everything before the open transaction: the worker read up to the
    # last stable offset and stopped there, where a read_uncommitted reader would have gone on
    wait_for(lambda: _committed(stack) > plain_offset, 30, "the group's offset past the plain record")
    assert not _customer_of(stack, pending), "a record of an open transaction was processed"

    transactional.commit_transaction(30)
    wait_for(lambda: _customer_of(stack, pending), 60, "the customer of the transaction committed last")

    # the aborted record came before the last one on the partition: its absence is final now
    assert not _customer_of(stack, aborted)
    assert not stack.mongo().find_one({"userId": aborted["payload"]["userId"]})
    assert not stack.sql(
        "SELECT 1 FROM event_store WHERE envelope->>'causationId' = %s", (aborted["eventId"],)
    ) and not stack.sql("SELECT 1 FROM processed_events WHERE event_id = %s::uuid", (aborted["eventId"],))
    ids = {event["eventId"] for event in (aborted, committed, plain, pending)}
    caused = _caused_by(stack, published_since, ids, until=pending["eventId"])
    assert sorted(caused) == sorted(event["eventId"] for event in (committed, plain, pending))


# -- Confluent's Avro serdes ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def registry(stack: Stack) -> Iterator[SchemaRegistryClient]:
    yield SchemaRegistryClient({"url": stack.env["SCHEMA_REGISTRY_URL"]})
    url = stack.env["SCHEMA_REGISTRY_URL"]
    with httpx.Client(timeout=10) as http:  # this run's scratch subjects, deleted for good
        for subject in http.get(f"{url}/subjects", params={"deleted": "true"}).json():
            if subject.startswith(f"test.{RUN}."):
                http.delete(f"{url}/subjects/{subject}")
                http.delete(f"{url}/subjects/{subject}", params={"permanent": "true"})


def _serializer(registry: SchemaRegistryClient, schema: dict[str, Any], name: str) -> AvroSerializer:
    # a subject of this run: the real subject's history stays as the service registered it
    subject = f"test.{RUN}.{name}-value"
    return AvroSerializer(registry, json.dumps(schema), conf={"subject.name.strategy": lambda ctx, record: subject})


def _evolved(schema: dict[str, Any]) -> dict[str, Any]:
    changed = copy.deepcopy(schema)
    payload = next(field for field in changed["fields"] if field["name"] == "payload")["type"]
    payload["fields"].append({"name": "preferredLocale", "type": ["null", "string"], "default": None})
    return changed


def test_confluents_avro_serializer_writes_user_registered_we_read_and_its_deserializer_reads_ours(
    stack: Stack, worker: Worker, registry: SchemaRegistryClient
) -> None:
    ours = load_schema(USER_REGISTERED)
    current, evolved = user_registered(first_name="Conflu"), user_registered(first_name="Evolved")
    evolved["payload"]["preferredLocale"] = "de-CH"
    context = SerializationContext(USER_EVENTS, MessageField.VALUE)
    published_since = stack.end_offsets(CUSTOMER_EVENTS)
    producer = _producer(stack)
    for event, schema, name in ((current, ours, "current"), (evolved, _evolved(ours), "evolved")):
        value = _serializer(registry, schema, name)(event, context)
        assert value is not None and value[0] == 0  # the Confluent wire format
        _produce(producer, event, value)

    numbers = {
        event["eventId"]: wait_for(lambda event=event: _customer_of(stack, event), 60, "the customer")[0][0]
        for event in (current, evolved)
    }

    deserialize = AvroDeserializer(registry)  # the writer's schema, by the id the value names
    wanted = set(numbers)

    def theirs(records: list[Any]) -> dict[str, dict[str, Any]]:
        decoded = [
            deserialize(record.value, SerializationContext(CUSTOMER_EVENTS, MessageField.VALUE)) for record in records
        ]
        # the schema's uuid logical type: Confluent's deserializer gives UUID objects
        return {str(event["causationId"]): event for event in decoded if event and str(event["causationId"]) in wanted}

    records = stack.read_since(CUSTOMER_EVENTS, published_since, lambda found: len(theirs(found)) == len(wanted))
    for event_id, published in theirs(records).items():
        assert published["eventType"] == "CustomerRegistered"
        assert published["payload"]["customerNumber"] == numbers[event_id]
    assert theirs(records)[evolved["eventId"]]["payload"]["firstName"] == "Evolved"
