"""Operator commands against the real stack: `dlq list`, `dlq replay`, `projections rebuild`.

Replays here go to a scratch topic named in the records' own x-original-topic header, so no
live worker consumes them.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import psycopg
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pymongo import MongoClient

from acme_customer.adapters.migrations import apply_migrations
from acme_customer.adapters.postgres import PostgresCustomerStore
from acme_customer.adapters.topics import ensure_topics, read_topic
from acme_customer.service_layer.register_customers import register_customers
from tests.unit.builders import user_registered

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
CLI = str(REPO / ".venv" / "bin" / "acme-customer")


@pytest.fixture(scope="module")
def environment(
    database_url: str, mongodb_uri: str, kafka_bootstrap: str, registry_url: str
) -> Iterator[dict[str, str]]:
    name = f"operator_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    url = urlunparse(urlparse(database_url)._replace(path=f"/{name}"))
    apply_migrations(url)
    asyncio.run(ensure_topics(kafka_bootstrap))
    yield {
        **os.environ,
        "DATABASE_URL": url,
        "MONGODB_URI": mongodb_uri,
        "MONGODB_DATABASE": name,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "SCHEMA_REGISTRY_URL": registry_url,
    }
    MongoClient(mongodb_uri).drop_database(name)
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, check=False, timeout=120)


async def _dead_letter(
    bootstrap: str,
    scratch: str,
    error_class: str,
    key: bytes,
    value: bytes,
    dlq: str = "identity.user.events.dlq",
    own_headers: tuple[tuple[str, bytes | None], ...] = (),
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            dlq,
            value,
            key=key,
            headers=[
                *own_headers,
                ("x-error-class", error_class.encode()),
                ("x-error-message", b"a reason"),
                ("x-attempts", b"6"),
                ("x-original-topic", scratch.encode()),
                ("x-original-partition", b"0"),
                ("x-original-offset", b"42"),
            ],
        )
    finally:
        await producer.stop()


async def _create_topic(bootstrap: str, name: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 1, 1)])
    finally:
        await admin.close()


async def _read_all(bootstrap: str, topic: str, expected: int) -> list[Any]:
    found = await read_topic(bootstrap, topic)
    assert len(found) == expected, f"{topic} holds {len(found)} records, expected {expected}"
    return found


def test_dlq_list_and_replay_republish_chosen_records_once(environment: dict[str, str]) -> None:
    bootstrap = environment["KAFKA_BOOTSTRAP_SERVERS"]
    scratch = f"scratch.replay.{uuid.uuid4().hex[:8]}"
    error_class = f"TestFailure{uuid.uuid4().hex[:6]}"  # unique, so that the filter selects only ours
    asyncio.run(_create_topic(bootstrap, scratch))
    user = user_registered()
    document = {"eventType": "UserRegistered", "payload": {"userId": str(user.user_id), "email": "x@example.com"}}
    value = json.dumps(document).encode()
    since = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()
    asyncio.run(_dead_letter(bootstrap, scratch, error_class, b"k1", value))
    asyncio.run(_dead_letter(bootstrap, scratch, error_class, b"k2", b"not json"))
    asyncio.run(_dead_letter(bootstrap, scratch, "SomethingElse", b"k3", b"{}"))

    listed = cli(environment, "dlq", "list", "--since", since, "--error-class", error_class)
    assert listed.returncode == 0, listed.stderr
    lines = [line for line in listed.stdout.splitlines() if error_class in line]
    assert len(lines) == 2
    assert str(user.user_id) in lines[0] and " no " in lines[0]
    assert "x@example.com" not in listed.stdout  # no personal data beyond the userId
    assert listed.stdout.rstrip().endswith("2 record(s)")

    dry = cli(environment, "dlq", "replay", "--since", since, "--error-class", error_class, "--dry-run")
    assert "would replay 2 record(s)" in dry.stdout
    asyncio.run(_read_all(bootstrap, scratch, 0))

    first = cli(environment, "dlq", "replay", "--since", since, "--error-class", error_class)
    assert first.returncode == 0, first.stderr
    assert "replayed 2 record(s); skipped 0" in first.stdout
    replayed = asyncio.run(_read_all(bootstrap, scratch, 2))
    assert [(record.key, record.value) for record in replayed] == [(b"k1", value), (b"k2", b"not json")]
    for record in replayed:
        headers = dict(record.headers)
        assert headers["x-replayed-from"].startswith(b"identity.user.events.dlq/")
        assert "x-error-class" not in headers

    again = cli(environment, "dlq", "replay", "--since", since, "--error-class", error_class)
    assert "replayed 0 record(s); skipped 2 already replayed" in again.stdout
    asyncio.run(_read_all(bootstrap, scratch, 2))
    listed_after = cli(environment, "dlq", "list", "--since", since, "--error-class", error_class)
    ours = [line for line in listed_after.stdout.splitlines() if error_class in line]
    assert len(ours) == 2 and all(" yes " in line for line in ours)

    forced = cli(environment, "dlq", "replay", "--since", since, "--error-class", error_class, "--force")
    assert "replayed 2 record(s)" in forced.stdout
    asyncio.run(_read_all(bootstrap, scratch, 4))


def test_the_projectors_dlq_is_listed_and_replayed_with_the_original_headers_byte_for_byte(
    environment: dict[str, str],
) -> None:
    bootstrap = environment["KAFKA_BOOTSTRAP_SERVERS"]
    scratch = f"scratch.replay.{uuid.uuid4().hex[:8]}"
    error_class = f"TestFailure{uuid.uuid4().hex[:6]}"
    asyncio.run(_create_topic(bootstrap, scratch))
    since = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()
    own = (("x-earlier-marker", b"1"), ("traceparent", None), ("binary", b"\xff\xfe"))
    dlq = "customer.events.dlq"
    asyncio.run(_dead_letter(bootstrap, scratch, error_class, b"c1", b"not json", dlq=dlq, own_headers=own))

    on_identity = cli(environment, "dlq", "list", "--since", since, "--error-class", error_class)
    assert on_identity.stdout.rstrip().endswith("0 record(s)")
    listed = cli(environment, "dlq", "list", "--topic", dlq, "--since", since, "--error-class", error_class)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.rstrip().endswith("1 record(s)")

    replayed = cli(environment, "dlq", "replay", "--topic", dlq, "--since", since, "--error-class", error_class)
    assert "replayed 1 record(s); skipped 0" in replayed.stdout, replayed.stderr
    (record,) = asyncio.run(_read_all(bootstrap, scratch, 1))
    assert (record.key, record.value) == (b"c1", b"not json")
    # its own headers byte for byte (a null value stays null), ours (x-) dropped
    assert [(name, value) for name, value in record.headers if name != "x-replayed-from"] == [
        ("traceparent", None),
        ("binary", b"\xff\xfe"),
    ]
    assert dict(record.headers)["x-replayed-from"].startswith(f"{dlq}/".encode())


def test_projections_rebuild_restores_missing_documents_idempotently(environment: dict[str, str]) -> None:
    async def create() -> list[str]:
        store = PostgresCustomerStore.create(environment["DATABASE_URL"])
        await store.open()
        try:
            users = [user_registered(user_id=uuid.uuid4(), event_id=uuid.uuid4()) for _ in range(3)]
            outcomes = await register_customers(users, store, lambda: datetime.now(UTC))
            return [str(outcome.customer_id) for outcome in outcomes]
        finally:
            await store.close()

    customer_ids = asyncio.run(create())
    collection = MongoClient(environment["MONGODB_URI"])[environment["MONGODB_DATABASE"]]["customers"]

    rebuilt = cli(environment, "projections", "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "from 3 CustomerRegistered event(s); 3 document(s) written" in rebuilt.stdout
    assert sorted(doc["_id"] for doc in collection.find({})) == sorted(customer_ids)

    collection.delete_one({"_id": customer_ids[1]})
    again = cli(environment, "projections", "rebuild")
    assert "from 3 CustomerRegistered event(s); 1 document(s) written" in again.stdout
    assert collection.count_documents({}) == 3
    assert collection.find_one({"_id": customer_ids[1]})["_version"] == 1

    idle = cli(environment, "projections", "rebuild")
    assert "3 CustomerRegistered event(s); 0 document(s) written" in idle.stdout


def test_operator_commands_refuse_a_bad_configuration_with_one_line(environment: dict[str, str]) -> None:
    for args in (("dlq", "list"), ("projections", "rebuild")):
        result = cli({**environment, "DATABASE_URL": "mysql://nope"}, *args)
        assert result.returncode == 2
        assert result.stderr.strip() == "acme-customer: DATABASE_URL must be a postgresql:// URL"
