"""The composition root: reads the settings once and builds every collaborator.

Nothing connects at import time; ``Container.start`` opens the pools, applies the schema
migrations and creates the read-model indexes when the worker starts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from dataclasses import dataclass

from schema_registry.client import AsyncSchemaRegistryClient

from acme_customer import faults
from acme_customer.adapters import schemas
from acme_customer.adapters.codec import AVRO, TopicCodec
from acme_customer.adapters.kafka import CUSTOMER_EVENTS, USER_EVENTS, KafkaPublisher, Producer
from acme_customer.adapters.migrations import apply_migrations
from acme_customer.adapters.mongo import MongoReadModel
from acme_customer.adapters.postgres import PostgresCustomerStore, PostgresProfiles
from acme_customer.config import Settings
from acme_customer.service_layer.ports import CustomerStore
from acme_customer.stream.project_customer import CustomerEventProjector
from acme_customer.stream.register_customer import RegisterCustomerHandler

logger = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    store: PostgresCustomerStore
    read_model: MongoReadModel
    register_customer: RegisterCustomerHandler
    project_customer: CustomerEventProjector


class Container:
    """Holds the settings from configuration time and the services from start-up on."""

    def __init__(self) -> None:
        self.settings: Settings | None = None
        self._services: Services | None = None
        self._started = asyncio.Event()

    def configure(self, env: dict[str, str] | None = None) -> Settings:
        self.settings = Settings.from_env(os.environ if env is None else env)
        return self.settings

    @property
    def services(self) -> Services:
        assert self._services is not None, "the container is not started"
        return self._services

    @property
    def started(self) -> bool:
        return self._started.is_set()

    async def wait_started(self) -> Services:
        await self._started.wait()
        return self.services

    async def start(self, producer: Producer) -> Services:
        settings = self.settings or self.configure()
        # migrations use a short blocking connection: run them off the event loop
        applied = await asyncio.to_thread(apply_migrations, settings.database_url)
        if applied:
            logger.info("schema migrations applied: %s", ", ".join(applied))
        store = PostgresCustomerStore.create(settings.database_url)
        await store.open()
        read_model = MongoReadModel.create(settings.mongodb_uri, settings.mongodb_database)
        await read_model.ensure_indexes()
        registry = AsyncSchemaRegistryClient(settings.schema_registry_url) if settings.schema_registry_url else None
        user_events = TopicCodec(USER_EVENTS, schemas.USER_REGISTERED, registry)
        customer_events = TopicCodec(CUSTOMER_EVENTS, schemas.CUSTOMER_REGISTERED, registry, settings.event_format)
        if settings.event_format == AVRO:
            schema_id = await customer_events.register()
            logger.info("CustomerRegistered schema registered as id %d under %s", schema_id, customer_events.subject)
        publisher = KafkaPublisher(producer, customer_events.encode)
        # the fault-injection harness's crash and failure points, only when it asks for them
        handler_store: CustomerStore = faults.FaultyStore(store) if faults.requested(os.environ) else store
        self._services = Services(
            settings=settings,
            store=store,
            read_model=read_model,
            register_customer=RegisterCustomerHandler(
                store=handler_store,
                publisher=publisher,
                dead_letters=publisher,
                decode=user_events.decode,
                backoff=settings.retry_backoff,
            ),
            project_customer=CustomerEventProjector(
                source=PostgresProfiles(store.pool),
                read_model=read_model,
                publisher=publisher,
                decode=customer_events.decode,
                backoff=settings.retry_backoff,
            ),
        )
        self._started.set()
        return self._services

    async def stop(self) -> None:
        if self._services is None:
            return
        await self._services.store.close()
        await self._services.read_model.close()


def kafka_reachable(bootstrap_servers: str, timeout: float = 2.0) -> bool:
    """True when a bootstrap server accepts a connection (readiness, not a full health check)."""
    for server in bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=timeout):
                return True
        except OSError:
            continue
    return False
