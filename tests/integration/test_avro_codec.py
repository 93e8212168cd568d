"""The Avro side of the wire format: TopicCodec against the real schema registry (Apicurio, ccompat API).

Every test works on its own topic name (``test.<hex>.events``), so its subject never collides with
the service's or another run's; the subjects are deleted (permanently) afterwards.
"""

from __future__ import annotations

import copy
import io
import json
import random
import socket
import struct
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from http.server import ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from schema_registry.client import AsyncSchemaRegistryClient
from schema_registry.client.schema import AvroSchema
from schema_registry.serializers.message_serializer import AsyncAvroMessageSerializer

from acme_customer.adapters.codec import TopicCodec
from acme_customer.adapters.schemas import CUSTOMER_REGISTERED, USER_REGISTERED, load_schema
from acme_customer.errors import ConfigError, InvalidEvent, RegistryUnavailable
from tests.registry_stub import ErrorPage
from tests.story import STORY_CUSTOMER_REGISTERED

pytestmark = pytest.mark.integration


# the DESIGN.md envelope with the UserRegistered payload, every field present (the story's ids)
USER_REGISTERED_EXAMPLE: dict[str, Any] = {
    "eventId": "01941234-5678-7abc-def0-123456789001",
    "eventType": "UserRegistered",
    "eventVersion": "1.0",
    "timestamp": "2026-01-02T10:30:02Z",
    "aggregateId": "01941234-5678-7abc-def0-123456789abc",
    "aggregateType": "User",
    "correlationId": "01941234-5678-7abc-def0-123456789002",
    "causationId": "01941234-5678-7abc-def0-123456789000",
    "payload": {
        "userId": "01941234-5678-7abc-def0-123456789abc",
        "email": "customer@example.com",
        "firstName": "Jane",
        "lastName": "Doe",
        "marketingOptIn": True,
        "registeredAt": "2026-01-02T10:30:02Z",
    },
}

REFERRAL_CODE = {"name": "referralCode", "type": ["null", "string"], "default": None}


def _with_payload_field(schema: dict[str, Any], field: dict[str, Any]) -> dict[str, Any]:
    changed = copy.deepcopy(schema)
    payload = next(f for f in changed["fields"] if f["name"] == "payload")
    payload["type"]["fields"].append(field)
    return changed


def _without_payload_field(schema: dict[str, Any], name: str) -> dict[str, Any]:
    changed = copy.deepcopy(schema)
    payload = next(f for f in changed["fields"] if f["name"] == "payload")
    payload["type"]["fields"] = [f for f in payload["type"]["fields"] if f["name"] != name]
    return changed


def _header(value: bytes) -> tuple[int, int]:
    magic, schema_id = struct.unpack(">bI", value[:5])
    return magic, schema_id


def _plain(value: Any) -> Any:
    """fastavro's uuid logical type as the JSON form has it."""
    return json.loads(json.dumps(value, default=str))


def _dead_registry_url() -> str:
    with socket.socket() as probe:  # a port nothing listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/apis/ccompat/v7"


@pytest.fixture
def error_page_registry() -> Iterator[str]:
    """A registry URL whose server answers every request with an HTML 503 page."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), ErrorPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/apis/ccompat/v7"
    finally:
        server.shutdown()
        server.server_close()


@pytest_asyncio.fixture
async def client(registry_url: str) -> AsyncSchemaRegistryClient:
    return AsyncSchemaRegistryClient(registry_url)


@pytest_asyncio.fixture
async def new_topic(registry_url: str) -> AsyncIterator[Callable[[], str]]:
    """Hands out unique topic names; their ``-value`` subjects are deleted permanently afterwards."""
    topics: list[str] = []

    def make() -> str:
        topics.append(f"test.{uuid.uuid4().hex[:12]}.events")
        return topics[-1]

    yield make
    async with httpx.AsyncClient(timeout=10) as http:
        for topic in topics:
            subject = f"{registry_url}/subjects/{topic}-value"
            await http.delete(subject)  # soft first: the API refuses a permanent delete before it
            await http.delete(subject, params={"permanent": "true"})


# -- round trips and the header -----------------------------------------------------------------


async def test_register_returns_the_id_the_5_byte_header_carries_and_the_story_event_round_trips(
    client: AsyncSchemaRegistryClient, new_topic: Callable[[], str]
) -> None:
    codec = TopicCodec(new_topic(), CUSTOMER_REGISTERED, client, "avro")

    schema_id = await codec.register()
    value = await codec.encode(STORY_CUSTOMER_REGISTERED)

    assert isinstance(schema_id, int) and schema_id >= 0
    assert codec.schema_id == schema_id
    assert value[0] == 0
    assert int.from_bytes(value[1:5], "big") == schema_id
    assert _header(value) == (0, schema_id)
    assert await codec.decode(value) == STORY_CUSTOMER_REGISTERED
    # the registry holds that id under the TopicNameStrategy subject, with our schema
    registered = await client.get_schema(codec.subject)
    assert registered is not None
    assert registered.schema_id == schema_id
    assert registered.schema.raw_schema == load_schema(CUSTOMER_REGISTERED)
    # a second start registers nothing new
    assert await TopicCodec(codec.topic, CUSTOMER_REGISTERED, client, "avro").register() == schema_id


async def test_a_user_registered_event_round_trips_through_the_registry_and_the_wire_format(
    client: AsyncSchemaRegistryClient, new_topic: Callable[[], str]
) -> None:
    codec = TopicCodec(new_topic(), USER_REGISTERED, client, "avro")

    schema_id = await codec.register()
    value = await codec.encode(USER_REGISTERED_EXAMPLE)

    assert _header(value) == (0, schema_id)
    assert await codec.decode(value) == USER_REGISTERED_EXAMPLE


async def test_an_avro_user_registered_without_the_optional_fields_decodes_with_their_defaults(
    client: AsyncSchemaRegistryClient, new_topic: Callable[[], str]
) -> None:
    topic = new_topic()
    minimal = copy.deepcopy(USER_REGISTERED_EXAMPLE)
    del minimal["correlationId"], minimal["causationId"]
    del minimal["payload"]["marketingOptIn"], minimal["payload"]["registeredAt"]
    producer = AsyncAvroMessageSerializer(client)
    value = await producer.encode_record_with_schema(
        f"{topic}-value", AvroSchema(load_schema(USER_REGISTERED)), minimal
    )

    decoded = await TopicCodec(topic, USER_REGISTERED, client).decode(value)

    assert (decoded["correlationId"], decoded["causationId"]) == (None, None)
    assert decoded["payload"]["marketingOptIn"] is False
    assert decoded["payload"]["registeredAt"] is None
    assert decoded["payload"]["userId"] == minimal["payload"]["userId"]


async def test_plain_json_still_decodes_on_an_avro_codec(client: AsyncSchemaRegistryClient) -> None:
    for topic, schema, example in (
        ("customer.events", CUSTOMER_REGISTERED, STORY_CUSTOMER_REGISTERED),
        ("identity.user.events", USER_REGISTERED, USER_REGISTERED_EXAMPLE),
    ):
        codec = TopicCodec(topic, schema, client, "avro")  # decoding needs no registration
        assert await codec.decode(json.dumps(example).encode()) == example


@pytest.mark.parametrize(
    ("schema_name", "example"),
    [(CUSTOMER_REGISTERED, STORY_CUSTOMER_REGISTERED), (USER_REGISTERED, USER_REGISTERED_EXAMPLE)],
)
def test_the_json_examples_round_trip_through_the_avro_schema_without_loss(
    schema_name: str, example: dict[str, Any]
) -> None:
    schema = parse_schema(load_schema(schema_name))
    buffer = io.BytesIO()
    schemaless_writer(buffer, schema, example)
    buffer.seek(0)

    decoded = schemaless_reader(buffer, schema, schema)

    assert buffer.read() == b"", "every byte read"
    assert _plain(decoded) == example
    assert json.dumps(_plain(decoded), sort_keys=True) == json.dumps(example, sort_keys=True)


# -- evolution ------------------------------------------------------------------------------------


async def test_a_v2_writer_with_an_extra_defaulted_field_is_read_by_the_v1_reader(
    client: AsyncSchemaRegistryClient, new_topic: Callable[[], str]
) -> None:
    topic = new_topic()
    subject = f"{topic}-value"
    v1 = load_schema(USER_REGISTERED)
    v2 = _with_payload_field(v1, REFERRAL_CODE)
    await client.update_compatibility("BACKWARD", subject)
    producer = AsyncAvroMessageSerializer(client)
    v1_value = await producer.encode_record_with_schema(subject, AvroSchema(v1), USER_REGISTERED_EXAMPLE)
    v2_record = copy.deepcopy(USER_REGISTERED_EXAMPLE)
    v2_record["payload"]["referralCode"] = "FRIEND-42"

    v2_value = await producer.encode_record_with_schema(subject, AvroSchema(v2), v2_record)  # the registry accepts it

    assert _header(v2_value)[1] != _header(v1_value)[1]
    assert len(await client.get_versions(subject)) == 2
    decoded = await TopicCodec(topic, USER_REGISTERED, client).decode(v2_value)
    assert decoded == USER_REGISTERED_EXAMPLE  # referralCode dropped, nothing else changed
    assert "referralCode" not in decoded["payload"]


async def test_a_v2_reader_reads_v1_data_with_the_default_filled_in(
    client: AsyncSchemaRegistryClient, new_topic: Callable[[], str]
) -> None:
    subject = f"{new_topic()}-value"
    v1 = load_schema(USER_REGISTERED)
    v2 = _with_payload_field(v1, REFERRAL_CODE)
    v1_value = await AsyncAvroMessageSerializer(client).encode_record_with_schema(
        subject, AvroSchema(v1), USER_REGISTERED_EXAMPLE
    )
    reader = AsyncAvroMessageSerializer(client, reader_schema=AvroSchema(v2).schema)  # type: ignore[arg-type]

    decoded = _plain(await reader.decode_message(v1_value))

    expected = copy.deepcopy(USER_REGISTERED_EXAMPLE)
    expected["payload"]["referralCode"] = None
    assert decoded == expected


async def test_an_older_writer_without_registered_at_decodes_with_registered_at_none(
    client: AsyncSchemaRegistryClient, new_topic: Callable[[], str]
) -> None:
    topic = new_topic()
    older = _without_payload_field(load_schema(USER_REGISTERED), "registeredAt")
    record = copy.deepcopy(USER_REGISTERED_EXAMPLE)
    del record["payload"]["registeredAt"]
    value = await AsyncAvroMessageSerializer(client).encode_record_with_schema(
        f"{topic}-value", AvroSchema(older), record
    )

    decoded = await TopicCodec(topic, USER_REGISTERED, client).decode(value)

    expected = copy.deepcopy(USER_REGISTERED_EXAMPLE)
    expected["payload"]["registeredAt"] = None
    assert decoded == expected


# -- bad input through decode() -----------------------------------------------------------------


async def _registered_value(
    client: AsyncSchemaRegistryClient, topic: str, schema_name: str, document: dict[str, Any]
) -> tuple[TopicCodec, bytes, int]:
    codec = TopicCodec(topic, schema_name, client, "avro")
    schema_id = await codec.register()
    return codec, await codec.encode(document), schema_id


async def test_truncated_avro_is_invalid_with_the_schema_id_named(
    client: AsyncSchemaRegistryClient, new_topic: Callable[[], str]
) -> None:
    codec, value, schema_id = await _registered_value(client, new_topic(), USER_REGISTERED, USER_REGISTERED_EXAMPLE)
    half = value[: 5 + (len(value) - 5) // 2]

    with pytest.raises(InvalidEvent) as caught:
        await codec.decode(half)

    assert str(caught.value) == f"value: truncated or corrupt Avro (schema id {schema_id})"
    # not only the half: every cut of the body is refused the same way
    reasons = set()
    for end in range(6, len(value)):
        with pytest.raises(InvalidEvent) as cut:
            await codec.decode(value[:end])
        reasons.add(str(cut.value))
    assert reasons == {f"value: truncated or corrupt Avro (schema id {schema_id})"}


async def test_a_header_without_a_body_is_invalid(
    client: AsyncSchemaRegistryClient, new_topic: Callable[[], str]
) -> None:
    codec, value, _ = await _registered_value(client, new_topic(), USER_REGISTERED, USER_REGISTERED_EXAMPLE)

    with pytest.raises(InvalidEvent, match=r"^value: Avro header without a body$"):
        await codec.decode(value[:5])


@pytest.mark.parametrize("schema_id", [4711, random.randrange(2**30, 2**31 - 1)])
async def test_an_unknown_schema_id_is_invalid(client: AsyncSchemaRegistryClient, schema_id: int) -> None:
    assert await client.get_by_id(schema_id) is None, "the id must really be unknown to the registry"
    body = b"\x02" + b"\x00" * 40
    value = struct.pack(">bI", 0, schema_id) + body

    with pytest.raises(InvalidEvent) as caught:
        await TopicCodec("identity.user.events", USER_REGISTERED, client).decode(value)

    assert str(caught.value) == f"value: unknown schema id {schema_id}"


async def test_magic_byte_1_is_not_avro_or_json(
    client: AsyncSchemaRegistryClient, new_topic: Callable[[], str]
) -> None:
    codec, value, _ = await _registered_value(client, new_topic(), USER_REGISTERED, USER_REGISTERED_EXAMPLE)

    with pytest.raises(InvalidEvent) as caught:
        await codec.decode(b"\x01" + value[1:])

    assert str(caught.value) == "value: not Avro or JSON"


async def test_avro_of_the_wrong_record_type_cannot_be_read_as_user_registered(
    client: AsyncSchemaRegistryClient, new_topic: Callable[[], str]
) -> None:
    _, value, schema_id = await _registered_value(client, new_topic(), CUSTOMER_REGISTERED, STORY_CUSTOMER_REGISTERED)
    user_events = TopicCodec("identity.user.events", USER_REGISTERED, client)

    with pytest.raises(InvalidEvent) as caught:
        await user_events.decode(value)

    assert str(caught.value) == f"value: schema id {schema_id} cannot be read as com.acme.identity.UserRegistered"
    # the same again once the id is cached
    with pytest.raises(InvalidEvent) as again:
        await user_events.decode(value)
    assert str(again.value) == str(caught.value)


# -- the registry away --------------------------------------------------------------------------


async def test_a_warm_codec_decodes_known_ids_without_asking_the_registry(
    client: AsyncSchemaRegistryClient, new_topic: Callable[[], str], registry_url: str
) -> None:
    topic = new_topic()
    subject = f"{topic}-value"
    producer = AsyncAvroMessageSerializer(client)
    known = await producer.encode_record_with_schema(
        subject, AvroSchema(load_schema(USER_REGISTERED)), USER_REGISTERED_EXAMPLE
    )
    older = _without_payload_field(load_schema(USER_REGISTERED), "registeredAt")
    older_record = copy.deepcopy(USER_REGISTERED_EXAMPLE)
    del older_record["payload"]["registeredAt"]
    unseen = await producer.encode_record_with_schema(subject, AvroSchema(older), older_record)
    assert _header(unseen)[1] != _header(known)[1]

    codec_client = AsyncSchemaRegistryClient(registry_url)
    codec = TopicCodec(topic, USER_REGISTERED, codec_client)
    assert await codec.decode(known) == USER_REGISTERED_EXAMPLE  # warms the cache

    calls: list[str] = []

    async def registry_down(url: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(url)
        raise httpx.ConnectError("registry down", request=httpx.Request("GET", url))

    codec_client.request = registry_down  # type: ignore[method-assign]

    for _ in range(3):
        assert await codec.decode(known) == USER_REGISTERED_EXAMPLE
    assert calls == [], "a known schema id must not cost a registry request"
    # an id never seen needs the registry: that is transient, not the record's fault
    with pytest.raises(RegistryUnavailable):
        await codec.decode(unseen)
    assert len(calls) == 1


async def test_an_unreachable_registry_is_registry_unavailable_for_decode_and_register(
    client: AsyncSchemaRegistryClient, new_topic: Callable[[], str]
) -> None:
    topic = new_topic()
    _, value, _ = await _registered_value(client, topic, USER_REGISTERED, USER_REGISTERED_EXAMPLE)
    dead = AsyncSchemaRegistryClient(_dead_registry_url())

    with pytest.raises(RegistryUnavailable):
        await TopicCodec(topic, USER_REGISTERED, dead).decode(value)
    with pytest.raises(RegistryUnavailable, match="schema registry"):
        await TopicCodec(topic, CUSTOMER_REGISTERED, dead, "avro").register()


async def test_a_registry_answering_an_error_page_is_registry_unavailable_for_decode_not_corrupt_avro(
    client: AsyncSchemaRegistryClient, new_topic: Callable[[], str], error_page_registry: str
) -> None:
    topic = new_topic()
    _, value, _ = await _registered_value(client, topic, USER_REGISTERED, USER_REGISTERED_EXAMPLE)

    with pytest.raises(RegistryUnavailable):
        await TopicCodec(topic, USER_REGISTERED, AsyncSchemaRegistryClient(error_page_registry)).decode(value)


async def test_register_against_an_error_page_is_registry_unavailable(
    new_topic: Callable[[], str], error_page_registry: str
) -> None:
    codec = TopicCodec(new_topic(), CUSTOMER_REGISTERED, AsyncSchemaRegistryClient(error_page_registry), "avro")

    with pytest.raises(RegistryUnavailable, match="schema registry"):
        await codec.register()


async def test_a_schema_not_backward_compatible_with_the_subject_is_a_config_error_naming_it(
    client: AsyncSchemaRegistryClient, new_topic: Callable[[], str]
) -> None:
    topic = new_topic()
    subject = f"{topic}-value"
    current = load_schema(CUSTOMER_REGISTERED)
    # the subject's v1 lacks registeredAt; ours has it without a default, so it cannot read v1's data
    earlier = _without_payload_field(current, "registeredAt")
    await client.update_compatibility("BACKWARD", subject)
    earlier_id = await client.register(subject, AvroSchema(earlier))
    codec = TopicCodec(topic, CUSTOMER_REGISTERED, client, "avro")

    with pytest.raises(ConfigError) as caught:
        await codec.register()

    assert subject in str(caught.value)
    assert CUSTOMER_REGISTERED in str(caught.value)
    assert codec.schema_id is None
    versions = await client.get_versions(subject)
    assert versions == [1], "nothing registered"
    latest = await client.get_schema(subject)
    assert latest is not None and latest.schema_id == earlier_id
