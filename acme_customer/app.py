"""The Faust application ``customer-service``: topics, agents and web views, wiring only.

Start it with ``faust -A acme_customer.app worker`` (or ``acme-customer worker``). Settings
are read when Faust configures the app, not at import; a bad setting stops the worker with
one line.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import faust
from faust.web import Request, Response, View
from opentelemetry import trace
from opentelemetry.propagate import extract
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from acme_customer.adapters.kafka import (
    CUSTOMER_EVENTS,
    CUSTOMER_EVENTS_DLQ,
    OUTPUT_COMPRESSION,
    USER_EVENTS,
    USER_EVENTS_DLQ,
)
from acme_customer.bootstrap import Container, kafka_reachable
from acme_customer.entrypoints.faust_internals import clear_when_flow_stops, forget_unacked
from acme_customer.errors import AcmeCustomerError, ConfigError, ReadModelUnavailable
from acme_customer.observability import configure_logging, configure_tracing
from acme_customer.stream.lanes import Delivery, PartitionLanes
from acme_customer.stream.records import Record, record_of

APP_ID = "customer-service"
container = Container()
tracer = trace.get_tracer("acme_customer")


class Worker(faust.Worker):
    """Faust's worker, which first makes sure a Kafka bootstrap server answers.

    Faust starts its producer before any service of ours, and an unreachable broker there is a
    traceback and exit 1; here it is one line and exit 2, like any other dependency at start.
    """

    async def on_first_start(self) -> None:
        settings = container.settings  # set by ``configure`` below, before the worker starts
        if settings is not None and not await asyncio.to_thread(kafka_reachable, settings.kafka_bootstrap_servers):
            print(
                f"acme-customer: cannot start: Kafka at {settings.kafka_bootstrap_servers} unreachable"
                " (no bootstrap server accepts a connection)",
                file=sys.stderr,
                flush=True,
            )
            raise SystemExit(2)
        await super().on_first_start()


app = faust.App(APP_ID, autodiscover=False, web_enabled=True, Worker=Worker)


@app.on_configured.connect  # type: ignore[arg-type]  # faust's stub omits the conf positional it sends
def configure(app: Any, conf: Any, **kwargs: Any) -> None:
    try:
        settings = container.configure()
        configure_tracing(os.environ)
    except ConfigError as error:
        for problem in error.problems:
            print(f"acme-customer: configuration error: {problem}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.log_level)
    conf.broker = [f"kafka://{server.strip()}" for server in settings.kafka_bootstrap_servers.split(",")]
    conf.broker_credentials = _credentials(settings)
    conf.web_port = settings.web_port
    conf.web_bind = settings.web_host
    conf.web_host = settings.web_host
    conf.store = "memory://"
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


def _credentials(settings: Any) -> Any:
    security = settings.kafka_security
    if security.protocol == "PLAINTEXT":
        return None
    ssl_context = None
    if security.protocol in ("SSL", "SASL_SSL"):
        ssl_context = faust.auth.ssl.create_default_context(cafile=security.ssl_cafile)  # type: ignore[attr-defined]
    if security.protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=security.sasl_username,
            password=security.sasl_password,
            mechanism=security.sasl_mechanism or "PLAIN",
            ssl_context=ssl_context,
        )
    return faust.SSLCredentials(ssl_context)


def _raw_topic(name: str) -> Any:
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")


user_events_topic = _raw_topic(USER_EVENTS)
customer_events_topic = _raw_topic(CUSTOMER_EVENTS)
dead_letter_topics = [_raw_topic(USER_EVENTS_DLQ), _raw_topic(CUSTOMER_EVENTS_DLQ)]


@app.service
class Resources(faust.Service):
    """Opens the database pools when the worker starts and closes them when it stops."""

    async def on_start(self) -> None:
        try:
            await container.start(app.producer)
        except AcmeCustomerError as error:
            # one clear line, not a traceback: the operator has something to fix
            print(f"acme-customer: cannot start: {error}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
        for topic in dead_letter_topics:
            await topic.maybe_declare()

    async def on_stop(self) -> None:
        await container.stop()


def _records(events: Sequence[Any]) -> list[Record]:
    return [record_of(event.message) for event in events]


def _trace_context(records: Sequence[Record]) -> Any:
    carrier = {
        name: value.decode(errors="replace")
        for name, value in records[0].headers
        if name == "traceparent" and value is not None
    }
    return extract(carrier)


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
        records = [delivery.record for delivery in deliveries]
        with tracer.start_as_current_span("consume_user_registered_event", context=_trace_context(records)) as span:
            span.set_attribute("messaging.system", "kafka")
            span.set_attribute("messaging.source.name", USER_EVENTS)
            span.set_attribute("messaging.batch.message_count", len(records))
            await lanes.submit(deliveries)
        del events, deliveries, records  # a released record must not stay referenced here


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


# -- web views --------------------------------------------------------------------------------


@app.page("/health")
async def health(self: View, request: Request) -> Response:
    """Liveness: the process answers."""
    return self.json({"status": "UP"})


@app.page("/ready")
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
        },
        status=200 if healthy else 503,
    )


@app.page("/metrics")
async def metrics(self: View, request: Request) -> Response:
    """Prometheus text format."""
    return self.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])


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


@app.page("/api/v1/customers/{customer_id}")
async def customer_by_id(self: View, request: Request, customer_id: str) -> Response:
    """One customer of the read model by customerId."""
    canonical = _uuid(customer_id)
    if canonical is None:
        return self.json({"error": "customerId must be a UUID"}, status=400)
    return await _lookup(self, {"_id": canonical})


@app.page("/api/v1/customers")
async def customer_search(self: View, request: Request) -> Response:
    """One customer of the read model by ``customerNumber`` or ``userId``."""
    number = request.query.get("customerNumber")
    user_id = request.query.get("userId")
    if number:
        return await _lookup(self, {"customerNumber": number})
    if user_id:
        canonical = _uuid(user_id)
        if canonical is None:
            return self.json({"error": "userId must be a UUID"}, status=400)
        return await _lookup(self, {"userId": canonical})
    return self.json({"error": "give customerNumber or userId"}, status=400)


def main() -> None:
    app.main()
