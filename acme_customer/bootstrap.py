"""The composition root: the worker, the CLI and the tests build the service here, one way.

``open_stores`` opens the real stores (migrations, pool, indexes); ``bootstrap`` builds the
handlers over whatever stores and producer it is given. Nothing connects at import time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from schema_registry.client import AsyncSchemaRegistryClient

from acme_customer import faults
from acme_customer.adapters import schemas
from acme_customer.adapters.codec import AVRO, TopicCodec
from acme_customer.adapters.kafka import CUSTOMER_EVENTS, USER_EVENTS, KafkaPublisher, Producer
from acme_customer.adapters.kafka_producer import OnDemandPublisher
from acme_customer.adapters.migrations import apply_migrations
from acme_customer.adapters.mongo import MongoReadModel
from acme_customer.adapters.mongo_audit import MongoAudit
from acme_customer.adapters.postgres import (
    PostgresCustomerStore,
    PostgresProfiles,
    registration_pages,
    server_version,
)
from acme_customer.adapters.postgres_audit import PostgresAudit
from acme_customer.adapters.schemas import registry_subjects
from acme_customer.adapters.topics import missing_topics
from acme_customer.config import Settings
from acme_customer.domain.events import CustomerRegistered
from acme_customer.entrypoints.api_auth import ApiAccess
from acme_customer.errors import AcmeCustomerError
from acme_customer.service_layer.ports import CustomerStore
from acme_customer.service_layer.project_customers import ProfileSource, ReadModel
from acme_customer.service_layer.reconcile_stores import Repairs
from acme_customer.service_layer.register_customers import publish_events
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
    customer_events = customer_events_codec(settings, registry)
    publisher = await customer_events_publisher(settings, producer, customer_events)
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


def customer_events_codec(settings: Settings, registry: AsyncSchemaRegistryClient | None) -> TopicCodec:
    """The codec of ``customer.events``: CustomerRegistered in the configured EVENT_FORMAT."""
    return TopicCodec(CUSTOMER_EVENTS, schemas.CUSTOMER_REGISTERED, registry, settings.event_format)


async def customer_events_publisher(settings: Settings, producer: Producer, codec: TopicCodec) -> KafkaPublisher:
    """The CustomerRegistered publisher (the worker's and reconcile's); registers the Avro schema first."""
    if settings.event_format == AVRO:
        schema_id = await codec.register()
        logger.info("CustomerRegistered schema registered as id %d under %s", schema_id, codec.subject)
    return KafkaPublisher(producer, codec.encode)


@dataclass
class Audit:
    """What verify reads (and reconcile repairs) with: both stores, opened without changing them."""

    command: PostgresAudit
    read_model: MongoAudit

    async def close(self) -> None:
        await self.command.close()
        await self.read_model.read_model.close()


async def open_audit(settings: Settings) -> Audit:
    """Connect to PostgreSQL and MongoDB as they are: no migrations, no index creation (verify is read-only)."""
    command = await PostgresAudit.connect(settings.database_url)
    return Audit(command, MongoAudit(MongoReadModel.create(settings.mongodb_uri, settings.mongodb_database)))


@asynccontextmanager
async def open_repairs(settings: Settings, audit: Audit) -> AsyncIterator[Repairs]:
    """What reconcile --apply acts with: the projection's stores and the publisher (Kafka on demand)."""
    store = PostgresCustomerStore.create(settings.database_url)
    await store.open()
    registry = registry_of(settings)
    publisher = OnDemandPublisher(
        settings.kafka_bootstrap_servers,
        lambda producer: customer_events_publisher(settings, producer, customer_events_codec(settings, registry)),
        settings.kafka_security,
    )

    async def publish(events: Sequence[CustomerRegistered]) -> None:
        await publish_events(events, publisher, store)

    try:
        yield Repairs(
            command=audit.command,
            read_model=audit.read_model,
            profiles=PostgresProfiles(store.pool),
            projection=audit.read_model.read_model,
            publish=publish,
        )
    finally:
        await publisher.close()
        await store.close()


@dataclass(frozen=True)
class DependencyCheck:
    """Whether one dependency answered: what it said, or the one-line problem."""

    name: str
    answer: str | None = None
    problem: str | None = None


async def _checked(name: str, ask: Awaitable[str]) -> DependencyCheck:
    try:
        return DependencyCheck(name, answer=await ask)
    except AcmeCustomerError as error:
        return DependencyCheck(name, problem=str(error))


async def check_dependencies(settings: Settings) -> list[DependencyCheck]:
    """Ask PostgreSQL, MongoDB, Kafka and the schema registry whether they answer, all at once."""

    async def postgres() -> str:
        return f"ok (server {await server_version(settings.database_url)})"

    async def mongo() -> str:
        read_model = MongoReadModel.create(settings.mongodb_uri, settings.mongodb_database)
        try:
            return f"ok (server {await read_model.server_version()})"
        finally:
            await read_model.close()

    async def kafka() -> str:
        missing = await missing_topics(settings.kafka_bootstrap_servers, settings.kafka_security)
        if missing:
            raise AcmeCustomerError(
                f"Kafka answers, but these topics are missing: {', '.join(missing)} (acme-customer topics ensure)"
            )
        return "ok (the contract's 4 topics exist)"

    async def registry() -> str:
        if settings.schema_registry_url is None:
            return "not configured (EVENT_FORMAT=json)"
        return f"ok ({len(await registry_subjects(settings.schema_registry_url))} subjects)"

    return list(
        await asyncio.gather(
            _checked("PostgreSQL", postgres()),
            _checked("MongoDB", mongo()),
            _checked("Kafka", kafka()),
            _checked("schema registry", registry()),
        )
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
