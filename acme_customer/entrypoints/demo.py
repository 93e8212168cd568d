"""``acme-customer demo``: the main job end to end on the local stack.

Starts a worker, publishes a handful of realistic UserRegistered events (one with marketing
opt-in, one delivered twice, one malformed; Avro through the registry when
SCHEMA_REGISTRY_URL is set, else JSON), then prints the profiles from MongoDB and the
CustomerRegistered events from ``customer.events``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from pymongo import MongoClient
from schema_registry.client import AsyncSchemaRegistryClient
from schema_registry.client.schema import AvroSchema
from schema_registry.serializers.message_serializer import AsyncAvroMessageSerializer

from acme_customer.adapters.codec import TopicCodec
from acme_customer.adapters.kafka import CUSTOMER_EVENTS, USER_EVENTS, USER_EVENTS_DLQ
from acme_customer.adapters.schemas import CUSTOMER_REGISTERED, USER_REGISTERED, load_schema
from acme_customer.adapters.topics import read_topic

PEOPLE = [("Jane", "Doe", True), ("John", "Smith", False), ("Ana", "Souza", None)]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _event(first: str, last: str, opt_in: bool | None) -> dict[str, Any]:
    user_id = str(uuid.uuid4())
    payload: dict[str, Any] = {
        "userId": user_id,
        "email": f"{first.lower()}.{last.lower()}@example.com",
        "firstName": first,
        "lastName": last,
        "registeredAt": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    if opt_in is not None:
        payload["marketingOptIn"] = opt_in
    return {
        "eventId": str(uuid.uuid4()),
        "eventType": "UserRegistered",
        "eventVersion": "1.0",
        "timestamp": payload["registeredAt"],
        "aggregateId": user_id,
        "aggregateType": "User",
        "correlationId": str(uuid.uuid4()),
        "payload": payload,
    }


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as response:
            body = json.loads(response.read())
            return bool(body.get("status") == "UP" and body.get("assignedPartitions", 0) > 0)
    except (OSError, ValueError):
        return False


async def _publish(bootstrap: str, events: list[dict[str, Any]], broken_key: bytes) -> None:
    """As the identity service would: Avro through the registry when there is one, else JSON."""
    registry_url = os.environ.get("SCHEMA_REGISTRY_URL")
    serializer = AsyncAvroMessageSerializer(AsyncSchemaRegistryClient(registry_url)) if registry_url else None
    schema = AvroSchema(load_schema(USER_REGISTERED))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for event in events:
            value = (
                await serializer.encode_record_with_schema(f"{USER_EVENTS}-value", schema, event)
                if serializer is not None
                else json.dumps(event).encode()
            )
            await producer.send_and_wait(USER_EVENTS, value, key=event["aggregateId"].encode())
        await producer.send_and_wait(USER_EVENTS, b'{"eventType": "UserRegistered", "payload": 42', key=broken_key)
    finally:
        await producer.stop()


async def _read(
    bootstrap: str,
    topic: str,
    since_ms: int,
    wanted: int,
    match: Callable[[Any], bool],
    convert: Callable[[Any], Awaitable[Any]] | None = None,
    timeout: float = 30.0,
) -> list[Any]:
    """Records of ``topic`` written since ``since_ms`` (converted) that ``match``, until ``wanted`` are found."""
    deadline = time.monotonic() + timeout
    while True:
        found = []
        for record in await read_topic(bootstrap, topic, since=since_ms, timeout=timeout):
            item = await convert(record) if convert is not None else record
            if match(item):
                found.append(item)
        if len(found) >= wanted or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.5)


async def _published(bootstrap: str, since_ms: int, causes: set[str]) -> list[dict[str, Any]]:
    """This run's CustomerRegistered events, decoded with the service's own codec (Avro or JSON)."""
    registry_url = os.environ.get("SCHEMA_REGISTRY_URL")
    codec = TopicCodec(
        CUSTOMER_EVENTS, CUSTOMER_REGISTERED, AsyncSchemaRegistryClient(registry_url) if registry_url else None
    )

    async def convert(record: Any) -> Any:
        return await codec.decode(record.value)

    return await _read(
        bootstrap, CUSTOMER_EVENTS, since_ms, len(causes), lambda event: event.get("causationId") in causes, convert
    )


def run() -> int:
    bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    port = _free_port()
    log_path = Path(os.environ.get("DEVSTACK_DIR", ".devstack")) / "logs" / "demo-worker.log"
    print(f"starting the worker (web on :{port}, log {log_path})…")
    with log_path.open("a") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "faust", "-A", "acme_customer.app", "worker", "-l", "info"],
            env={**os.environ, "WEB_PORT": str(port)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        while not _ready(port):
            if worker.poll() is not None or time.monotonic() > deadline:
                print(f"the worker did not become ready; see {log_path}", file=sys.stderr)
                return 1
            time.sleep(0.5)
        events = [_event(*person) for person in PEOPLE]
        started_ms = int(time.time() * 1000) - 1000
        broken_key = f"demo-malformed-{uuid.uuid4()}".encode()
        deliveries = [*events, events[0]]  # Jane's event is delivered twice
        print(f"publishing {len(deliveries)} UserRegistered deliveries (one duplicate) and one malformed record…")
        asyncio.run(_publish(bootstrap, deliveries, broken_key))
        user_ids = [event["aggregateId"] for event in events]
        client: MongoClient[dict[str, Any]] = MongoClient(os.environ["MONGODB_URI"])
        collection = client[os.environ.get("MONGODB_DATABASE", "customer")]["customers"]
        deadline = time.monotonic() + 30
        while collection.count_documents({"userId": {"$in": user_ids}}) < len(user_ids):
            if time.monotonic() > deadline:
                print("profiles did not reach MongoDB within 30 s", file=sys.stderr)
                return 1
            time.sleep(0.2)
        print("\n== profiles in MongoDB (customers collection)")
        for document in collection.find({"userId": {"$in": user_ids}}).sort("customerNumber"):
            print(json.dumps(document, indent=2, default=str))
        causes = {event["eventId"] for event in events}
        published = asyncio.run(_published(bootstrap, started_ms, causes))
        print(f"\n== CustomerRegistered on {CUSTOMER_EVENTS}: {len(published)} for {len(deliveries)} deliveries")
        for event in published:
            print(json.dumps(event, indent=2))
        dead = asyncio.run(_read(bootstrap, USER_EVENTS_DLQ, started_ms, 1, lambda r: r.key == broken_key, timeout=30))
        for record in dead[-1:]:
            headers = {name: value.decode() for name, value in record.headers}
            print(f"\n== the malformed record is in {USER_EVENTS_DLQ}: {headers['x-error-message']}")
        return 0
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
