"""The composition root: the worker, the CLI and the tests build the service here, one way.

``open_stores`` opens the real stores (migrations, pool, indexes); ``bootstrap`` builds the
handlers over whatever stores and producer it is given. Nothing connects at import time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from schema_registry.client import AsyncSchemaRegistryClient

from acme_customer import faults
from acme_customer.adapters import schemas
from acme_customer.adapters.codec import AVRO, TopicCodec
from acme_customer.adapters.kafka import CUSTOMER_EVENTS, USER_EVENTS, KafkaPublisher, Producer
from acme_customer.adapters.migrations import apply_migrations
from acme_customer.adapters.mongo import MongoReadModel
from acme_customer.adapters.postgres import PostgresCustomerStore, PostgresProfiles, registration_pages
from acme_customer.config import Settings
from acme_customer.entrypoints.api_auth import ApiAccess
from acme_customer.service_layer.ports import CustomerStore
from acme_customer.service_layer.project_customers import ProfileSource, ReadModel
from acme_customer.stream.project_customer import CustomerEventProjector
from acme_customer.stream.register_customer import ProcessedCache, RegisterCustomerHandler, SeenEvents

logger = logging.getLogger(__name__)


@dataclass
class Stores:
    """The service's stores, open: the command store, its profiles and the read model."""

    command: CustomerStore
    profiles: ProfileSource
    read_model: ReadModel
    event_pages: Callable[[], AsyncIterator[list[dict[str, Any]]]]  # every CustomerRegistered stored, paged
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def close(self) -> None:
        for close in self.closers:
            await close()


async def open_stores(settings: Settings) -> Stores:
    """Apply the migrations, open the PostgreSQL pool, create the read model's indexes."""
    # migrations use a short blocking connection: run them off the event loop
    applied = await asyncio.to_thread(apply_migrations, settings.database_url)
    if applied:
        logger.info("schema migrations applied: %s", ", ".join(applied))
    store = PostgresCustomerStore.create(settings.database_url)
    await store.open()
    read_model = MongoReadModel.create(settings.mongodb_uri, settings.mongodb_database)
    try:
        await read_model.ensure_indexes()
    except BaseException:
        await store.close()
        await read_model.close()
        raise
    return Stores(
        command=store,
        profiles=PostgresProfiles(store.pool),
        read_model=read_model,
        event_pages=lambda: registration_pages(store.pool),
        closers=[store.close, read_model.close],
    )


@dataclass
class Services:
    """Everything the agents and the web views use, built once at start."""

    settings: Settings
    stores: Stores
    register_customer: RegisterCustomerHandler
    project_customer: CustomerEventProjector


async def bootstrap(
    settings: Settings,
    producer: Producer,
    stores: Stores,
    registry: AsyncSchemaRegistryClient | None = None,
    env: Mapping[str, str] = os.environ,
    seen: SeenEvents | None = None,
) -> Services:
    """Build the handlers over the given stores and producer (the worker's, or a test's fakes).

    Registers the CustomerRegistered schema when ``EVENT_FORMAT=avro``; wraps the command
    store in the fault harness's hooks only when ``env`` asks for them.
    """
    user_events = TopicCodec(USER_EVENTS, schemas.USER_REGISTERED, registry)
    customer_events = TopicCodec(CUSTOMER_EVENTS, schemas.CUSTOMER_REGISTERED, registry, settings.event_format)
    if settings.event_format == AVRO:
        schema_id = await customer_events.register()
        logger.info("CustomerRegistered schema registered as id %d under %s", schema_id, customer_events.subject)
    publisher = KafkaPublisher(producer, customer_events.encode)
    command_store = faults.FaultyStore(stores.command, env) if faults.requested(env) else stores.command
    return Services(
        settings=settings,
        stores=stores,
        register_customer=RegisterCustomerHandler(
            store=command_store,
            publisher=publisher,
            dead_letters=publisher,
            decode=user_events.decode,
            backoff=settings.retry_backoff,
            seen=seen if seen is not None else ProcessedCache(),
        ),
        project_customer=CustomerEventProjector(
            source=stores.profiles,
            read_model=stores.read_model,
            publisher=publisher,
            decode=customer_events.decode,
            backoff=settings.retry_backoff,
        ),
    )


def registry_of(settings: Settings) -> AsyncSchemaRegistryClient | None:
    """The schema registry client, when one is configured."""
    return AsyncSchemaRegistryClient(settings.schema_registry_url) if settings.schema_registry_url else None


class Container:
    """The worker's services, from start-up on (Faust declares its agents at import time)."""

    def __init__(self) -> None:
        self.settings: Settings | None = None
        self._api_access: ApiAccess | None = None
        self._services: Services | None = None
        self._started = asyncio.Event()

    def configure(self, env: Mapping[str, str] | None = None) -> Settings:
        self.settings = Settings.from_env(os.environ if env is None else env)
        self._api_access = ApiAccess.of(self.settings)
        return self.settings

    @property
    def api_access(self) -> ApiAccess:
        """Who may read the customer API; known from configuration on, before the stores open."""
        assert self._api_access is not None, "the container is not configured"
        return self._api_access

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

    async def start(self, producer: Producer, seen: SeenEvents | None = None) -> Services:
        settings = self.settings or self.configure()
        stores = await open_stores(settings)
        try:
            self._services = await bootstrap(settings, producer, stores, registry_of(settings), seen=seen)
        except BaseException:
            await stores.close()
            raise
        self._started.set()
        return self._services

    async def stop(self) -> None:
        if self._services is not None:
            await self._services.stores.close()


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
