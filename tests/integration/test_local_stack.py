"""The real local stack (``acme-customer devstack up``): Kafka, the registry, PostgreSQL and FerretDB.

Every test talks to a real server and uses uniquely named resources, so it can run next to other
suites against the same stack.
"""

from __future__ import annotations

import json
import struct
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from psycopg import sql
from pymongo import AsyncMongoClient, InsertOne, MongoClient, ReplaceOne, UpdateOne
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError
from schema_registry.client import AsyncSchemaRegistryClient
from schema_registry.client.schema import AvroSchema
from schema_registry.serializers import AsyncAvroMessageSerializer

pytestmark = pytest.mark.integration

POLL_DEADLINE_S = 30.0


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


# -- Kafka ----------------------------------------------------------------------------------------


async def test_kafka_round_trip_with_headers(kafka_bootstrap: str) -> None:
    topic = _unique("it-local-stack")
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        response = await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
        errors = {name: code for name, code, *_ in response.topic_errors}
        assert errors == {topic: 0}, f"create_topics failed: {response.topic_errors}"

        described = await admin.describe_topics([topic])
        assert [t["topic"] for t in described] == [topic]
        assert len(described[0]["partitions"]) == 3

        key = uuid.uuid4().hex.encode()
        value = json.dumps({"user_id": key.decode(), "email": "someone@example.com"}).encode()
        headers = [("event-type", b"UserRegistered"), ("trace-id", uuid.uuid4().hex.encode())]

        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True)
        await producer.start()
        try:
            metadata = await producer.send_and_wait(topic, value=value, key=key, headers=headers)
        finally:
            await producer.stop()
        assert metadata.topic == topic
        assert metadata.partition in range(3)
        assert metadata.offset == 0

        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=kafka_bootstrap,
            group_id=_unique("it-group"),
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            received = []
            deadline = time.monotonic() + POLL_DEADLINE_S
            while not received and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    received.extend(records)
        finally:
            await consumer.stop()

        assert len(received) == 1, f"expected exactly one record within {POLL_DEADLINE_S}s, got {len(received)}"
        record = received[0]
        assert record.key == key
        assert record.value == value
        assert list(record.headers) == headers
        assert (record.partition, record.offset) == (metadata.partition, metadata.offset)
    finally:
        try:
            await admin.delete_topics([topic])
        finally:
            await admin.close()


# -- Schema registry (Apicurio, Confluent-compatible API) -----------------------------------------

AVRO_SCHEMA = {
    "type": "record",
    "name": "IntegrationProbe",
    "namespace": "acme.customer.tests",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "count", "type": "int"},
        {"name": "note", "type": ["null", "string"], "default": None},
    ],
}


async def test_registry_register_and_read_back_by_id(registry_url: str) -> None:
    subject = f"{_unique('it-local-stack')}-value"
    client = AsyncSchemaRegistryClient(registry_url)
    try:
        schema_id = await client.register(subject, AVRO_SCHEMA)
        assert isinstance(schema_id, int)
        assert schema_id > 0

        # a fresh client: register() caches id -> schema, so this really asks the server
        reader = AsyncSchemaRegistryClient(registry_url)
        fetched = await reader.get_by_id(schema_id)
        assert fetched is not None
        assert fetched.schema_type == "AVRO"
        assert fetched == AvroSchema(AVRO_SCHEMA)

        latest = await reader.get_schema(subject)
        assert latest is not None
        assert (latest.schema_id, latest.version) == (schema_id, 1)
        assert await reader.get_versions(subject) == [1]

        # registering the same schema again is idempotent
        assert await AsyncSchemaRegistryClient(registry_url).register(subject, AVRO_SCHEMA) == schema_id
        assert await reader.get_versions(subject) == [1]
    finally:
        await client.delete_subject(subject)


async def test_registry_confluent_wire_format_round_trip(registry_url: str) -> None:
    subject = f"{_unique('it-local-stack')}-value"
    client = AsyncSchemaRegistryClient(registry_url)
    try:
        serializer = AsyncAvroMessageSerializer(client)
        record = {"id": "customer-1", "count": 42, "note": "héllo"}
        payload = await serializer.encode_record_with_schema(subject, AvroSchema(AVRO_SCHEMA), record)

        magic, schema_id = struct.unpack(">bI", payload[:5])
        assert magic == 0
        assert schema_id == await client.register(subject, AVRO_SCHEMA)

        # decode with a serializer whose client has never seen the schema: fetched by id from the server
        decoded = await AsyncAvroMessageSerializer(AsyncSchemaRegistryClient(registry_url)).decode_message(payload)
        assert decoded == record
    finally:
        await client.delete_subject(subject)


# -- PostgreSQL -----------------------------------------------------------------------------------


async def test_postgres_version_and_transactions(database_url: str) -> None:
    table = sql.Identifier(_unique("it_local_stack"))
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cursor = await conn.execute("SHOW server_version_num")
        row = await cursor.fetchone()
        assert row is not None
        assert int(row[0]) >= 160000

        await conn.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, label text NOT NULL)").format(table))
        try:
            async with conn.transaction():
                await conn.execute(sql.SQL("INSERT INTO {} VALUES (1, 'committed')").format(table))

            class Boom(Exception):
                """Raised inside the transaction to make it roll back."""

            with pytest.raises(Boom):
                async with conn.transaction():
                    await conn.execute(sql.SQL("INSERT INTO {} VALUES (2, 'rolled back')").format(table))
                    raise Boom

            # a second connection sees only what was committed
            async with await psycopg.AsyncConnection.connect(database_url) as other:
                cursor = await other.execute(sql.SQL("SELECT id, label FROM {} ORDER BY id").format(table))
                assert await cursor.fetchall() == [(1, "committed")]
        finally:
            await conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))


# -- MongoDB wire server (FerretDB) ---------------------------------------------------------------


@pytest.fixture
def mongo_db(mongodb_uri: str) -> Iterator[Database[dict[str, Any]]]:
    client: MongoClient[dict[str, Any]] = MongoClient(mongodb_uri, serverSelectionTimeoutMS=5000)
    name = _unique("it_local_stack")
    try:
        yield client[name]
    finally:
        client.drop_database(name)
        assert name not in client.list_database_names()
        client.close()


def _is_ferretdb(db: Database[dict[str, Any]]) -> bool:
    return "ferretdbVersion" in db.client.admin.command("buildInfo")


def test_mongo_upsert_creates_then_updates(mongo_db: Database[dict[str, Any]]) -> None:
    profiles = mongo_db["profiles"]

    created = profiles.update_one({"_id": "u1"}, {"$set": {"email": "a@example.com"}}, upsert=True)
    assert (created.matched_count, created.modified_count, created.upserted_id) == (0, 0, "u1")

    updated = profiles.update_one({"_id": "u1"}, {"$set": {"email": "b@example.com"}}, upsert=True)
    assert (updated.matched_count, updated.modified_count, updated.upserted_id) == (1, 1, None)

    assert profiles.find_one({"_id": "u1"}) == {"_id": "u1", "email": "b@example.com"}
    assert profiles.count_documents({}) == 1


def test_mongo_bulk_write_counts(mongo_db: Database[dict[str, Any]]) -> None:
    profiles = mongo_db["profiles"]
    profiles.insert_one({"_id": "existing", "n": 0})

    result = profiles.bulk_write(
        [
            UpdateOne({"_id": "new-1"}, {"$set": {"n": 1}}, upsert=True),
            UpdateOne({"_id": "existing"}, {"$set": {"n": 2}}, upsert=True),
            UpdateOne({"_id": "new-2"}, {"$set": {"n": 3}}, upsert=True),
            InsertOne({"_id": "inserted-1", "n": 4}),
            InsertOne({"_id": "inserted-2", "n": 5}),
        ]
    )
    assert result.inserted_count == 2
    assert result.upserted_count == 2
    assert result.matched_count == 1
    assert result.modified_count == 1
    if _is_ferretdb(mongo_db):
        # FerretDB 1.24.2 numbers "upserted" entries among the upserts, not by the op's position
        assert result.upserted_ids == {0: "new-1", 1: "new-2"}
    else:
        assert result.upserted_ids == {0: "new-1", 2: "new-2"}
    assert {doc["_id"]: doc["n"] for doc in profiles.find()} == {
        "existing": 2,
        "new-1": 1,
        "new-2": 3,
        "inserted-1": 4,
        "inserted-2": 5,
    }


def test_mongo_unique_index_rejects_duplicates(mongo_db: Database[dict[str, Any]]) -> None:
    profiles = mongo_db["profiles"]
    assert profiles.create_index("email", unique=True) == "email_1"
    index = profiles.index_information()["email_1"]
    assert index.get("unique") is True

    profiles.insert_one({"_id": "u1", "email": "same@example.com"})
    with pytest.raises(DuplicateKeyError) as caught:
        profiles.insert_one({"_id": "u2", "email": "same@example.com"})
    assert caught.value.code == 11000
    assert "E11000" in str(caught.value)
    assert profiles.count_documents({}) == 1


def test_mongo_version_guarded_upsert_hits_duplicate_id(mongo_db: Database[dict[str, Any]]) -> None:
    """The projector's optimistic guard: an older event must not overwrite a newer document.

    The filter does not match the stored (newer) document, so the upsert tries to insert a second
    document with the same ``_id``: MongoDB raises E11000, and so does FerretDB (though its
    message names only the collection, not the index or key). The stored document is untouched.
    """
    profiles = mongo_db["profiles"]
    profiles.insert_one({"_id": "u1", "_version": 5, "email": "new@example.com"})
    stale = {"_version": 1, "email": "old@example.com"}

    with pytest.raises(DuplicateKeyError) as caught:
        profiles.replace_one({"_id": "u1", "_version": {"$lt": 2}}, stale, upsert=True)
    assert caught.value.code == 11000
    assert caught.value.details is not None
    assert caught.value.details["errmsg"].startswith("E11000 duplicate key error collection: ")

    with pytest.raises(DuplicateKeyError) as caught:
        profiles.update_one({"_id": "u1", "_version": {"$lt": 2}}, {"$set": stale}, upsert=True)
    assert caught.value.code == 11000

    assert profiles.find_one({"_id": "u1"}) == {"_id": "u1", "_version": 5, "email": "new@example.com"}

    # and a guarded replace with an older stored version does go through
    result = profiles.replace_one(
        {"_id": "u1", "_version": {"$lt": 6}}, {"_version": 6, "email": "newest"}, upsert=True
    )
    assert (result.matched_count, result.modified_count, result.upserted_id) == (1, 1, None)
    assert profiles.find_one({"_id": "u1"}) == {"_id": "u1", "_version": 6, "email": "newest"}


def test_mongo_update_command_duplicate_key_reply(mongo_db: Database[dict[str, Any]]) -> None:
    """Pin down the raw ``update`` reply when an upsert in a batch hits a duplicate ``_id``.

    MongoDB answers ``n``/``nModified``/``upserted`` plus a write error at the failing op's index
    and, when unordered, carries on with the rest. FerretDB 1.24.2 differs (recorded here so a
    change of server shows up): the error is reported at index 0 whatever op failed, ``n``,
    ``nModified`` and ``upserted`` are missing and it stops at the error even when unordered —
    which also makes pymongo's ``bulk_write`` raise ``KeyError('nModified')`` instead of
    ``BulkWriteError``. The projector must therefore use single-document writes for guarded upserts.
    """
    profiles = mongo_db["profiles"]
    profiles.insert_one({"_id": "u1", "_version": 5})

    reply = mongo_db.command(
        "update",
        "profiles",
        updates=[
            {"q": {"_id": "a"}, "u": {"$set": {"x": 1}}, "upsert": True},
            {"q": {"_id": "u1", "_version": {"$lt": 2}}, "u": {"_version": 1}, "upsert": True},
            {"q": {"_id": "b"}, "u": {"$set": {"x": 1}}, "upsert": True},
        ],
        ordered=False,
    )
    errors = reply["writeErrors"]
    assert [error["code"] for error in errors] == [11000]
    stored = sorted(doc["_id"] for doc in profiles.find())
    if _is_ferretdb(mongo_db):
        assert errors[0]["index"] == 0  # sic: the failing op is at index 1
        assert "nModified" not in reply
        assert "upserted" not in reply
        assert stored == ["a", "u1"]  # sic: unordered, yet "b" was not attempted
        with pytest.raises(KeyError, match="nModified"):
            profiles.bulk_write([ReplaceOne({"_id": "u1", "_version": {"$lt": 2}}, {"_version": 1}, upsert=True)])
    else:
        assert errors[0]["index"] == 1
        assert stored == ["a", "b", "u1"]
        with pytest.raises(BulkWriteError) as caught:
            profiles.bulk_write([ReplaceOne({"_id": "u1", "_version": {"$lt": 2}}, {"_version": 1}, upsert=True)])
        assert caught.value.details["writeErrors"][0]["code"] == 11000


async def test_mongo_async_client_round_trip(mongodb_uri: str) -> None:
    """pymongo's AsyncMongoClient against the same server."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_uri, serverSelectionTimeoutMS=5000)
    name = _unique("it_local_stack")
    try:
        collection = client[name]["profiles"]
        created = await collection.update_one({"_id": "u1"}, {"$set": {"v": 1}}, upsert=True)
        assert created.upserted_id == "u1"
        assert await collection.find_one({"_id": "u1"}) == {"_id": "u1", "v": 1}
    finally:
        await client.drop_database(name)
        assert name not in await client.list_database_names()
        await client.close()
