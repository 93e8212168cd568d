"""The Faust application ``customer-service``: topics, agents and web views, wiring only.

Start it with ``faust -A acme_customer.app worker`` (or ``acme-customer worker``). Settings
are read when Faust configures the app, not at import; a bad setting stops the worker with
one line.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, NoReturn
from uuid import UUID

import faust
from faust.sensors.prometheus import setup_prometheus_sensors
from faust.web import Request, Response, View

from acme_customer import observability as metrics
from acme_customer.adapters.consumer_lag import GroupOffsets, lag_of
from acme_customer.adapters.kafka import (
    CONSUMER_GROUP,
    CUSTOMER_EVENTS,
    CUSTOMER_EVENTS_DLQ,
    METADATA_MAX_AGE_MS,
    OUTPUT_COMPRESSION,
    USER_EVENTS,
    USER_EVENTS_DLQ,
)
from acme_customer.adapters.kafka_security import faust_credentials, refusal
from acme_customer.adapters.processed_table import TABLE_NAME, TableCache, changelog_configs
from acme_customer.adapters.topics import DEFAULT_PARTITIONS
from acme_customer.bootstrap import Container, kafka_reachable
from acme_customer.domain.customer_number import CustomerNumber
from acme_customer.entrypoints import kafka_transport, web_server
from acme_customer.entrypoints.api_auth import API_DISABLED
from acme_customer.entrypoints.faust_internals import (
    clear_when_flow_stops,
    forget_unacked,
    stop_the_flow_while_the_streams_resume,
)
from acme_customer.entrypoints.web import guarded, requires_token
from acme_customer.errors import AcmeCustomerError, ConfigError, ReadModelUnavailable
from acme_customer.logs import configure_logging, fatal_line, logging_config
from acme_customer.observability import configure_tracing
from acme_customer.stream.lanes import Delivery, PartitionLanes
from acme_customer.stream.records import Record, record_of
from acme_customer.stream.trace_context import consuming

APP_ID = CONSUMER_GROUP
LAG_INTERVAL_S = 5.0  # how often consumer_lag_records is measured
EXPIRY_INTERVAL_S = 600.0  # how often the processed-eventId table drops entries past the retention
INPUT_PARTITIONS = DEFAULT_PARTITIONS  # identity.user.events as created: the table's changelog has as many
container = Container()
logger = logging.getLogger(__name__)


class Worker(faust.Worker):
    """Faust's worker, which first makes sure a Kafka bootstrap server answers.

    Faust starts its producer before any service of ours, and an unreachable broker there is a
    traceback and exit 1; here it is one line and exit 2, like any other dependency at start.
    """

    async def on_first_start(self) -> None:
        settings = container.settings  # set by ``configure`` below, before the worker starts
        if settings is not None:
            servers = settings.kafka_bootstrap_servers
            if not await asyncio.to_thread(kafka_reachable, servers):
                self._cannot_start(f"Kafka at {servers} unreachable (no bootstrap server accepts a connection)")
            # with TLS or SASL, Faust's clients would log a refused handshake and retry for ever
            refused = await refusal(servers, settings.kafka_security)
            if refused is not None:
                self._cannot_start(f"Kafka at {servers} {refused}")
        await super().on_first_start()

    @staticmethod
    def _cannot_start(problem: str) -> NoReturn:
        print(fatal_line(f"acme-customer: cannot start: {problem}", os.environ), file=sys.stderr, flush=True)
        raise SystemExit(2)


app = faust.App(APP_ID, autodiscover=False, web_enabled=True, Worker=Worker)
processed_cache: TableCache | None = None  # the table's cache, when PROCESSED_CACHE=table


@app.on_configured.connect  # type: ignore[arg-type]  # faust's stub omits the conf positional it sends
def configure(app: Any, conf: Any, **kwargs: Any) -> None:
    try:
        settings = container.configure()
        configure_tracing(os.environ)
    except ConfigError as error:
        for problem in error.problems:
            print(fatal_line(f"acme-customer: configuration error: {problem}", os.environ), file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.log_level, settings.log_format)
    # the worker applies its own logging set-up when it starts, replacing the root handlers:
    # given this, it applies ours instead, so Faust's lines come out in LOG_FORMAT too
    conf.logging_config = logging_config(settings.log_level, settings.log_format)
    if not container.api_access.enabled:
        logger.warning(API_DISABLED)
    else:
        source = "API_TOKENS_FILE, re-read on change" if settings.api_tokens_file else "API_TOKENS"
        logger.info("read API: bearer token required, %d token(s) from %s", len(settings.api_tokens), source)
    # Faust's aiokafka transport with read_committed consumers (entrypoints/kafka_transport.py)
    servers = settings.kafka_bootstrap_servers.split(",")
    conf.broker = [f"{kafka_transport.SCHEME}://{server.strip()}" for server in servers]
    conf.consumer_metadata_max_age_ms = METADATA_MAX_AGE_MS  # new partitions consumed within ~30 s
    conf.producer_metadata_max_age_ms = METADATA_MAX_AGE_MS
    conf.broker_credentials = faust_credentials(settings.kafka_security)
    conf.web = web_server.SCHEME  # Faust's aiohttp server; a port in use is one line, not a traceback
    conf.web_port = settings.web_port  # `faust worker --web-port N` overrides it, after this hook
    conf.web_bind = settings.web_host
    conf.web_host = settings.web_host
    # Faust's views for operators: / (sensor statistics), /assignment/, /performance/ (docs/operations.md)
    conf.web_stats_enabled = True
    conf.web_metrics_enabled = True
    conf.store = "memory://"  # the table's entries are rebuilt from its changelog (docs/reliability.md)
    conf.table_standby_replicas = 0  # a cache needs no standby copies on other workers
    conf.consumer_auto_offset_reset = "earliest"
    conf.topic_allow_declare = True
    conf.topic_disable_leader = True  # no leader topic: we use no Faust leader election
    conf.producer_acks = -1  # all in-sync replicas
    conf.producer_compression_type = OUTPUT_COMPRESSION
    # above the input topics' max.message.bytes (4 MiB) plus headers, so any record that
    # arrived can be dead-lettered as it came
    conf.producer_max_request_size = 5 * 1024 * 1024
    conf.stream_wait_empty = True  # on shutdown, finish the batch in flight before committing
    conf.broker_commit_every = 100
    conf.broker_commit_interval = 1.0


def _raw_topic(name: str) -> Any:
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")


user_events_topic = _raw_topic(USER_EVENTS)
customer_events_topic = _raw_topic(CUSTOMER_EVENTS)
dead_letter_topics = [_raw_topic(USER_EVENTS_DLQ), _raw_topic(CUSTOMER_EVENTS_DLQ)]


def _declare_processed_table() -> Any | None:
    """With PROCESSED_CACHE=table: eventId -> when it was processed, its changelog partitions the
    input's (adapters/processed_table.py). With memory (the default), no table at all: no changelog
    topic and no recovery phase.

    Declared after the hook above is connected: declaring a table reads the app's configuration,
    and the configuration is what the hook writes (settings read once, here, at import).
    """
    if container.settings is None:
        app.conf  # noqa: B018  # runs the hook: the settings from the environment, or one line and exit 2
    settings = container.settings
    assert settings is not None
    if settings.processed_cache != "table":
        return None
    return app.Table(
        TABLE_NAME,
        partitions=INPUT_PARTITIONS,
        key_type=str,
        value_type=float,
        extra_topic_configs=changelog_configs(settings.processed_cache_retention_s),
        help="Input eventIds processed (committed and published): a cache in front of processed_events",
    )


processed_table = _declare_processed_table()
# a table's recovery leaves the consumer's flow on while Faust resumes and seeks the input: without
# this, records fetched then are lost to the pipeline and hold their partition's commits back
stop_the_flow_while_the_streams_resume(app)


@app.service
class Resources(faust.Service):
    """Opens the database pools when the worker starts and closes them when it stops."""

    async def on_start(self) -> None:
        try:
            settings = container.settings or container.configure()
            global processed_cache
            if processed_table is not None:
                processed_cache = TableCache(processed_table, settings.processed_cache_retention_s)
            await container.start(app.producer, processed_cache)
        except AcmeCustomerError as error:
            # one clear line, not a traceback: the operator has something to fix
            print(fatal_line(f"acme-customer: cannot start: {error}", os.environ), file=sys.stderr, flush=True)
            raise SystemExit(2) from None
        for topic in dead_letter_topics:
            await topic.maybe_declare()

    async def on_stop(self) -> None:
        await group_offsets.close()
        await container.stop()


def _records(events: Sequence[Any]) -> list[Record]:
    return [record_of(event.message) for event in events]


def _deliveries(stream: Any, events: Sequence[Any]) -> list[Delivery]:
    return [
        Delivery(record, functools.partial(stream.ack, event), functools.partial(_release, event.message))
        for record, event in zip(_records(events), events, strict=True)
    ]


def _release(message: Any) -> None:
    # An abandoned record is neither acknowledged nor processed: Faust must stop waiting for it
    # (wait_empty, before a rebalance or a shutdown commits) without counting it as done, so
    # the committed offset stays before it.
    forget_unacked(app.consumer, message)


def _partition_lanes(handler: Any, batch_size: int, agent: str, sleep: Any = asyncio.sleep) -> PartitionLanes:
    lanes = PartitionLanes(
        handler,
        container.services.settings.retry_backoff,
        batch_size,
        accepting=app.flow_control.is_active,
        sleep=sleep,
        agent=agent,
    )
    # the moment to abandon the lanes: a rebalance or a shutdown begins
    clear_when_flow_stops(app.flow_control, lanes)
    return lanes


# concurrency stays 1: with more, Faust commits offsets past records still in flight (faust-streaming #606);
# the lanes acknowledge each partition's records in order, and only when finished
@app.agent(user_events_topic, concurrency=1)
async def register_customer(stream: Any) -> None:
    """UserRegistered -> customer in PostgreSQL -> CustomerRegistered on customer.events."""
    services = await container.wait_started()
    settings = services.settings
    lanes = _partition_lanes(services.register_customer, settings.batch_size, "register_customer")
    async for events in stream.noack_take(settings.batch_size, within=settings.batch_within_seconds):
        deliveries = _deliveries(stream, events)
        # the batch's span: a child of its one record's trace, or linked to each record's (stream/trace_context.py)
        with consuming("consume_user_registered_event", USER_EVENTS, [delivery.record for delivery in deliveries]):
            await lanes.submit(deliveries)
        del events, deliveries  # a released record must not stay referenced here


@app.agent(customer_events_topic, concurrency=1)
async def project_customer(stream: Any) -> None:
    """CustomerRegistered -> the customer's document in MongoDB."""
    services = await container.wait_started()
    settings = services.settings
    projector = services.project_customer
    # larger batches than the creation side: after a MongoDB outage the backlog must drain fast;
    # a lane waits with the projector's own wait, which ends as soon as MongoDB answers again
    lanes = _partition_lanes(projector, settings.projection_batch_size, "project_customer", projector.wait_before_retry)
    async for events in stream.noack_take(settings.projection_batch_size, within=settings.batch_within_seconds):
        await lanes.submit(_deliveries(stream, events))
        del events  # a released record must not stay referenced here


# -- consumer lag ------------------------------------------------------------------------------


class _LazyGroupOffsets:
    """The group's committed offsets, asked with the worker's own settings once it has them."""

    def __init__(self) -> None:
        self._offsets: GroupOffsets | None = None

    async def committed(self, partitions: Sequence[Any]) -> dict[Any, int | None]:
        if self._offsets is None:
            settings = container.services.settings
            self._offsets = GroupOffsets(settings.kafka_bootstrap_servers, APP_ID, settings.kafka_security)
        return await self._offsets.committed(partitions)

    async def close(self) -> None:
        if self._offsets is not None:
            await self._offsets.close()


group_offsets = _LazyGroupOffsets()


# -- the processed-eventId table: size, expiry, recovery time ----------------------------------

_assigned_at: float | None = None


def _entries() -> int:
    return len(processed_table.data) if processed_table is not None else 0


@app.on_partitions_assigned.connect  # type: ignore[arg-type]  # faust's stub omits the sender it sends
async def _recovery_begins(app: Any, assigned: Any, **kwargs: Any) -> None:
    global _assigned_at
    _assigned_at = time.monotonic()


@app.on_rebalance_complete.connect  # type: ignore[arg-type]
async def _recovery_ends(app: Any, **kwargs: Any) -> None:
    """Tables recovered, streams resume: how long the processed-eventId table took, and its size."""
    global _assigned_at
    if _assigned_at is not None and processed_table is not None:
        seconds = time.monotonic() - _assigned_at
        metrics.processed_cache_recovery_seconds.observe(seconds)
        logger.info("processed-eventId table recovered in %.2f s: %d entries", seconds, _entries())
        _assigned_at = None
    metrics.processed_cache_entries.set(_entries())


@app.timer(interval=EXPIRY_INTERVAL_S)  # type: ignore[untyped-decorator]  # faust's timer decorator is untyped
async def expire_processed_cache() -> None:
    if processed_cache is not None:
        expired = processed_cache.expire()
        if expired:
            logger.info("processed-eventId table: %d entries past the retention dropped", expired)


@app.timer(interval=LAG_INTERVAL_S)  # type: ignore[untyped-decorator]  # faust's timer decorator is untyped
async def measure_consumer_lag() -> None:
    """consumer_lag_records{topic,partition} for the input partitions this worker holds."""
    if not container.started:
        return
    held = [tp for tp in app.consumer.assignment() if tp.topic in (USER_EVENTS, CUSTOMER_EVENTS)]
    try:
        ends = await app.consumer.highwaters(*held) if held else {}
        committed = await group_offsets.committed(held)
    except Exception as error:  # Kafka away: the last figures stay, the next tick tries again
        logger.warning("consumer lag not measured: %s: %s", type(error).__name__, error)
        return
    metrics.set_consumer_lag(lag_of({(tp.topic, tp.partition): end for tp, end in ends.items()}, committed))
    metrics.processed_cache_entries.set(_entries())


# -- web views --------------------------------------------------------------------------------


# Faust's own monitor in Prometheus form (customer_service_* series) beside the story's metrics: this
# registers the one /metrics view, which serves the default registry, where both live. (Like any
# app.page, it reads app.conf, so it comes after the on_configured hook above is connected.)
setup_prometheus_sensors(app)


@app.page("/health")
@guarded
async def health(self: View, request: Request) -> Response:
    """Liveness: the process answers."""
    return self.json({"status": "UP"})


@app.page("/ready")
@guarded
async def ready(self: View, request: Request) -> Response:
    """Readiness: PostgreSQL, MongoDB and Kafka reachable."""
    if not container.started:
        return self.json({"status": "STARTING"}, status=503)
    services = container.services
    checks = {
        "postgresql": await services.stores.command.ping(),
        "mongodb": await services.stores.read_model.ping(),
        "kafka": await asyncio.to_thread(kafka_reachable, services.settings.kafka_bootstrap_servers),
    }
    healthy = all(checks.values())
    return self.json(
        {
            "status": "UP" if healthy else "DOWN",
            "checks": {name: "UP" if up else "DOWN" for name, up in checks.items()},
            "assignedPartitions": len(app.consumer.assignment()),
            "partitions": _held(app.consumer.assignment()),
        },
        status=200 if healthy else 503,
    )


def _held(assignment: Any) -> dict[str, list[int]]:
    """The partitions this worker holds, by topic (Faust's /assignment/ lists only tables' topics)."""
    held: dict[str, list[int]] = {}
    for tp in sorted(assignment):
        held.setdefault(tp.topic, []).append(tp.partition)
    return held


def _customer_response(document: dict[str, Any]) -> dict[str, Any]:
    response = {"customerId": document["_id"]}
    response.update({key: value for key, value in document.items() if key not in ("_id", "_version")})
    return response


async def _lookup(view: View, query: dict[str, Any]) -> Response:
    if not container.started:
        return view.json({"error": "starting"}, status=503)
    try:
        document = await container.services.stores.read_model.find_one(query)
    except ReadModelUnavailable:
        return view.json({"error": "read model unavailable"}, status=503)
    if document is None:
        return view.json({"error": "customer not found"}, status=404)
    return view.json(_customer_response(document))


def _uuid(text: str) -> str | None:
    try:
        return str(UUID(text))
    except ValueError:
        return None


# the customer API: a bearer token first, so a caller without one learns nothing, not even "starting"
@app.page("/api/v1/customers/{customer_id}")
@guarded
@requires_token(lambda: container.api_access)
async def customer_by_id(self: View, request: Request, customer_id: str) -> Response:
    """One customer of the read model by customerId."""
    canonical = _uuid(customer_id)
    if canonical is None:
        return self.json({"error": "customerId must be a UUID"}, status=400)
    return await _lookup(self, {"_id": canonical})


@app.page("/api/v1/customers")
@guarded
@requires_token(lambda: container.api_access)
async def customer_search(self: View, request: Request) -> Response:
    """One customer of the read model by ``customerNumber`` or ``userId``."""
    number = request.query.get("customerNumber")
    user_id = request.query.get("userId")
    if number:
        try:
            CustomerNumber.parse(number)
        except ValueError:
            return self.json({"error": "customerNumber must be ACME-YYYYMM-NNNNNN"}, status=400)
        return await _lookup(self, {"customerNumber": number})
    if user_id:
        canonical = _uuid(user_id)
        if canonical is None:
            return self.json({"error": "userId must be a UUID"}, status=400)
        return await _lookup(self, {"userId": canonical})
    return self.json({"error": "give customerNumber or userId"}, status=400)


def main() -> None:
    app.main()
