"""The real adapters pass the port contracts (the fakes pass the same: tests/unit/test_fake_contracts.py)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from acme_customer.adapters.codec import encode_json
from acme_customer.adapters.kafka import CUSTOMER_EVENTS, KafkaPublisher
from acme_customer.adapters.kafka_producer import AiokafkaProducer
from acme_customer.adapters.mongo import MongoReadModel
from acme_customer.adapters.postgres import PostgresCustomerStore, PostgresProfiles
from acme_customer.adapters.topics import end_offsets, read_topic
from tests.contracts.profiles import ProfileSourceContract
from tests.contracts.publisher import Letter, Published, PublisherContract
from tests.contracts.read_model import ReadModelContract
from tests.contracts.unit_of_work import UnitOfWorkContract

pytestmark = pytest.mark.integration


class TestPostgresUnitOfWork(UnitOfWorkContract):
    @pytest.fixture
    def store(self, adapter_store: PostgresCustomerStore) -> PostgresCustomerStore:
        return adapter_store


class TestMongoReadModel(ReadModelContract):
    @pytest.fixture
    def read_model(self, adapter_read_model: MongoReadModel) -> MongoReadModel:
        return adapter_read_model


async def _ensure_topic(bootstrap: str, name: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if name not in await admin.list_topics():
            await admin.create_topics([NewTopic(name, 1, 1)])
    finally:
        await admin.close()


async def _read_from(bootstrap: str, topic: str, since: dict[int, int]) -> list[Any]:
    return await read_topic(bootstrap, topic, since=since)


class TestKafkaPublisher(PublisherContract):
    scratch_topic = f"scratch.contract.{uuid.uuid4().hex[:8]}"

    @pytest_asyncio.fixture
    async def publisher(self, kafka_bootstrap: str) -> AsyncIterator[KafkaPublisher]:
        await _ensure_topic(kafka_bootstrap, f"{self.scratch_topic}.dlq")
        self.bootstrap = kafka_bootstrap
        self.since = {
            CUSTOMER_EVENTS: await end_offsets(kafka_bootstrap, CUSTOMER_EVENTS),
            f"{self.scratch_topic}.dlq": await end_offsets(kafka_bootstrap, f"{self.scratch_topic}.dlq"),
        }
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", compression_type="zstd")
        await producer.start()
        try:
            yield KafkaPublisher(AiokafkaProducer(producer), _json)
        finally:
            await producer.stop()

    async def published(self, publisher: KafkaPublisher, customer_ids: list[str]) -> list[Published]:
        records = await _read_from(self.bootstrap, CUSTOMER_EVENTS, self.since[CUSTOMER_EVENTS])
        return [
            Published(record.key, json.loads(record.value)["eventId"])
            for record in records
            if record.key is not None and record.key.decode() in customer_ids
        ]

    async def dead_letters(self, publisher: KafkaPublisher, keys: list[bytes]) -> list[Letter]:
        topic = f"{self.scratch_topic}.dlq"
        letters = []
        for record in await _read_from(self.bootstrap, topic, self.since[topic]):
            if record.key not in keys:
                continue
            ours = {name: (value or b"").decode() for name, value in record.headers if name.startswith("x-")}
            assert ours["x-original-topic"] == self.scratch_topic
            letters.append(
                Letter(
                    record.topic,
                    record.key,
                    record.value,
                    [(name, value) for name, value in record.headers if not name.startswith("x-")],
                    ours["x-error-class"],
                    ours["x-error-message"],
                    int(ours["x-attempts"]),
                )
            )
        return letters


async def _json(document: dict[str, Any]) -> bytes:
    return encode_json(document)


class TestPostgresProfiles(ProfileSourceContract):
    @pytest.fixture
    def store(self, adapter_store: PostgresCustomerStore) -> PostgresCustomerStore:
        return adapter_store

    @pytest.fixture
    def profiles(self, adapter_store: PostgresCustomerStore) -> PostgresProfiles:
        return PostgresProfiles(adapter_store.pool)
