"""End-to-end harness: a real worker process against the real local stack.

The session gets its own PostgreSQL database and MongoDB database, so that invariants can be
checked over everything this session produced; Kafka topics and the consumer group are the
contract's own (the worker starts from the group's committed offsets, so only records
produced by this session reach the fresh databases).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse, urlunparse

import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pymongo import MongoClient
from schema_registry.client import AsyncSchemaRegistryClient

from acme_customer.adapters.codec import TopicCodec
from acme_customer.adapters.schemas import CUSTOMER_REGISTERED, USER_REGISTERED
from acme_customer.adapters.topics import ensure_topics, read_topic

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")

# the session worker's read-API tokens: two at once, as during a rotation
API_TOKENS = ("e2e-old-token-0123456789abcdef", "e2e-new-token-fedcba9876543210")
API_TOKEN = API_TOKENS[0]


def wait_for(probe: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll ``probe`` until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def http_get(url: str, token: str | None = None) -> tuple[int, Mapping[str, str], bytes]:
    """Status, headers and body of a GET (with ``Authorization: Bearer <token>`` when given)."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def http_json(url: str, token: str | None = None) -> tuple[int, Any]:
    status, _, body = http_get(url, token)
    return status, json.loads(body or b"null")


def http_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def sample(text: str, series: str) -> float:
    """One series' value in a Prometheus text page (0 when absent)."""
    found = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


@dataclass
class Worker:
    """A worker process (``faust -A acme_customer.app worker``) and its web port."""

    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    stderr_path: Path | None = None  # stderr apart from stdout (log_path), when given

    def start(self) -> Worker:
        with self.log_path.open("ab") as log, (self.stderr_path or self.log_path).open("ab") as errors:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "faust", "-A", "acme_customer.app", "worker", "-l", "info"],
                env={**self.env, "WEB_PORT": str(self.port)},
                stdout=log,
                stderr=subprocess.STDOUT if self.stderr_path is None else errors,
                cwd=REPO,
            )
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> dict[str, Any] | None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"worker exited with {self.process.returncode}; see {self.log_path}")
        try:
            status, body = http_json(f"{self.url}/ready")
        except OSError:
            return None
        return body if status == 200 and body.get("assignedPartitions", 0) > 0 else None

    def wait_ready(self, timeout: float = 120) -> dict[str, Any]:
        return wait_for(self.ready, timeout, "the worker to be ready with partitions assigned", interval=0.25)

    def stop(self, timeout: float = 30) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"worker did not stop within {timeout}s of SIGTERM") from None


@dataclass
class Stack:
    """The endpoints this session's worker uses, with helpers to observe them."""

    env: dict[str, str]
    database_url: str
    mongo_database: str

    @property
    def bootstrap(self) -> str:
        return self.env["KAFKA_BOOTSTRAP_SERVERS"]

    def sql(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url, autocommit=True) as connection:
            return connection.execute(query, params).fetchall()

    def mongo(self) -> Any:
        client: MongoClient[dict[str, Any]] = MongoClient(self.env["MONGODB_URI"], tz_aware=True)
        return client[self.mongo_database]["customers"]

    def decode(self, values: list[bytes], topic: str = "customer.events") -> list[dict[str, Any]]:
        """Values as the worker wrote them (Avro with the registry, or JSON), decoded with the service's codec."""

        async def decode_all() -> list[dict[str, Any]]:
            registry = AsyncSchemaRegistryClient(self.env["SCHEMA_REGISTRY_URL"])
            schema = CUSTOMER_REGISTERED if topic == "customer.events" else USER_REGISTERED
            codec = TopicCodec(topic, schema, registry)
            return [await codec.decode(value) for value in values]

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(decode_all())
        # called from inside read_since's loop (a predicate): decode on a loop of its own
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, decode_all()).result()

    def produce(self, records: list[tuple[bytes | None, bytes]], topic: str = "identity.user.events") -> None:
        async def send() -> None:
            producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", max_request_size=4 * 1024 * 1024)
            await producer.start()
            try:
                for key, value in records:
                    await producer.send(topic, value, key=key)
                await producer.flush()
            finally:
                await producer.stop()

        asyncio.run(send())

    def end_offsets(self, topic: str) -> dict[int, int]:
        async def read() -> dict[int, int]:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
            await admin.start()
            try:
                (description,) = await admin.describe_topics([topic])
            finally:
                await admin.close()
            consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None)
            await consumer.start()
            try:
                partitions = [TopicPartition(topic, p["partition"]) for p in description["partitions"]]
                ends = await consumer.end_offsets(partitions)
                return {tp.partition: offset for tp, offset in ends.items()}
            finally:
                await consumer.stop()

        return asyncio.run(read())

    def read_since(
        self, topic: str, since: dict[int, int], until: Callable[[list[Any]], bool], timeout: float = 30
    ) -> list[Any]:
        """Records of ``topic`` after the offsets ``since``, read until ``until(records)`` holds."""
        found = asyncio.run(read_topic(self.bootstrap, topic, since=since, until=until, timeout=timeout))
        if not until(found):
            raise AssertionError(f"timed out reading {topic}: {len(found)} records so far")
        return found


def _with_database(url: str, name: str) -> str:
    parts = urlparse(url)
    return urlunparse(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def stack(database_url: str, mongodb_uri: str, kafka_bootstrap: str) -> Iterator[Stack]:
    suffix = uuid.uuid4().hex[:10]
    database = f"customer_e2e_{suffix}"
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {database}")
    asyncio.run(ensure_topics(kafka_bootstrap))
    # no read-API token unless a test gives one: the process environment must not decide
    inherited = {name: value for name, value in os.environ.items() if name not in ("API_TOKENS", "API_TOKENS_FILE")}
    env = {
        **inherited,
        "DATABASE_URL": _with_database(database_url, database),
        "MONGODB_URI": mongodb_uri,
        "MONGODB_DATABASE": f"customer_e2e_{suffix}",
        "EVENT_FORMAT": "avro",
        "LOG_LEVEL": "INFO",
        "RETRY_BACKOFF_SECONDS": "0.1,0.2,0.4,0.8,1.6",
        "PYTHONUNBUFFERED": "1",
    }
    yield Stack(env=env, database_url=env["DATABASE_URL"], mongo_database=env["MONGODB_DATABASE"])
    MongoClient(mongodb_uri).drop_database(env["MONGODB_DATABASE"])
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


@contextmanager
def databases_of_its_own(stack: Stack, prefix: str, **env: str) -> Iterator[dict[str, str]]:
    """The session's environment with ``env`` over it and a PostgreSQL and a MongoDB database of
    its own (``<prefix>_<random>``), dropped afterwards: for a worker on another Kafka or listener."""
    database = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(stack.database_url, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {database}")
    try:
        yield {
            **stack.env,
            **env,
            "DATABASE_URL": stack.database_url.rsplit("/", 1)[0] + f"/{database}",
            "MONGODB_DATABASE": database,
        }
    finally:
        MongoClient(stack.env["MONGODB_URI"]).drop_database(database)
        with psycopg.connect(stack.database_url, autocommit=True) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


@pytest.fixture(scope="session")
def worker(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    log_dir = Path(os.environ.get("DEVSTACK_DIR", REPO / ".devstack")) / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {**stack.env, "API_TOKENS": ",".join(API_TOKENS)}
    running = Worker(env=env, log_path=log_dir / "e2e-worker.log").start()
    running.wait_ready()
    yield running
    running.stop()


# -- event builders ----------------------------------------------------------------------------


def now_rfc3339() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def user_registered(
    user_id: str | None = None,
    event_id: str | None = None,
    registered_at: str | None = None,
    marketing_opt_in: bool | None = None,
    correlation_id: str | None = "generate",
    first_name: str = "Jane",
    last_name: str = "Doe",
    email: str | None = None,
) -> dict[str, Any]:
    user_id = user_id or str(uuid.uuid4())
    timestamp = now_rfc3339()
    payload: dict[str, Any] = {
        "userId": user_id,
        "email": email or f"user-{user_id[:8]}@example.com",
        "firstName": first_name,
        "lastName": last_name,
    }
    if registered_at is not None:
        payload["registeredAt"] = registered_at
    if marketing_opt_in is not None:
        payload["marketingOptIn"] = marketing_opt_in
    event: dict[str, Any] = {
        "eventId": event_id or str(uuid.uuid4()),
        "eventType": "UserRegistered",
        "eventVersion": "1.0",
        "timestamp": timestamp,
        "aggregateId": user_id,
        "aggregateType": "User",
        "payload": payload,
    }
    if correlation_id == "generate":
        event["correlationId"] = str(uuid.uuid4())
    elif correlation_id is not None:
        event["correlationId"] = correlation_id
    return event


def as_record(event: dict[str, Any]) -> tuple[bytes, bytes]:
    return event["aggregateId"].encode(), json.dumps(event).encode()
