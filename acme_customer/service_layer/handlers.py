"""Message handlers: what the agents run for each batch of consumed records.

For identity events: decode and validate each record (a bad one goes to the DLQ at once),
skip other event types, create the customers in one transaction (retried with backoff),
publish their CustomerRegistered events and wait for Kafka, then dead-letter what was
refused. The batch is finished (and may be acknowledged) only when this returns.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from acme_customer import observability as metrics
from acme_customer.domain.clock import parse_rfc3339
from acme_customer.domain.events import USER_REGISTERED, UserRegistered
from acme_customer.domain.validation import event_type_of, parse_user_registered
from acme_customer.errors import InvalidEvent, PermanentError
from acme_customer.faults import crash_point
from acme_customer.service_layer.create_customers import Outcome, create_customers
from acme_customer.service_layer.ports import CustomerStore, EventPublisher, Record
from acme_customer.service_layer.project_customers import ProfileSource, ReadModel, project_customers
from acme_customer.service_layer.retry import RetriesExhausted, with_backoff

logger = logging.getLogger(__name__)
Decoder = Callable[[bytes | None], Awaitable[Any]]  # the codec at the edge, for one topic


class ProcessedCache:
    """Recently processed input eventIds: saves a database round trip, guards nothing.

    The guard is the ``processed_events`` primary key; this only lets a worker skip a
    redelivery it has itself seen complete.
    """

    def __init__(self, capacity: int = 100_000):
        self.capacity = capacity
        self._seen: OrderedDict[UUID, None] = OrderedDict()

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._seen

    def add(self, event_id: UUID) -> None:
        self._seen[event_id] = None
        self._seen.move_to_end(event_id)
        while len(self._seen) > self.capacity:
            self._seen.popitem(last=False)


@dataclass
class IdentityEventHandler:
    store: CustomerStore
    publisher: EventPublisher
    decode: Decoder
    backoff: Sequence[float]
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    seen: ProcessedCache = field(default_factory=ProcessedCache)

    async def handle(self, records: Sequence[Record]) -> None:
        """Process a batch to the end: customers committed and published, the rest dead-lettered.

        Never raises for a record: Faust acknowledges a batch whose processing raised (its
        take buffer acks in a ``finally``), so an unexpected error sends the whole batch to the
        DLQ instead, where a replay is harmless (idempotency) and nothing is lost.
        """
        try:
            await self._handle(records)
        except Exception as error:  # deliberately broad: see the docstring
            logger.exception("unexpected error in a batch of %d record(s); dead-lettering the batch", len(records))
            for record in records:
                await self._dead_letter(record, error, attempts=1)

    async def _handle(self, records: Sequence[Record]) -> None:
        users: list[tuple[Record, UserRegistered]] = []
        for record in records:
            user = await self._accept(record)
            if user is not None:
                users.append((record, user))
        fresh = [(record, user) for record, user in users if user.event_id not in self.seen]
        skipped = len(users) - len(fresh)
        if skipped:
            metrics.customer_created_total.labels(status="duplicate").inc(skipped)
        if not fresh:
            return
        try:
            outcomes = await self._create([user for _, user in fresh])
        except RetriesExhausted as exhausted:
            logger.error(
                "giving up on %d record(s) after %d attempts: %s", len(fresh), exhausted.attempts, exhausted.last
            )
            metrics.processing_attempts_total.labels(agent="user_registered", outcome="exhausted").inc()
            for record, _ in fresh:
                await self._dead_letter(record, exhausted.last, exhausted.attempts)
            return
        crash_point("after_commit")
        unpublished = await self._publish(fresh, outcomes)
        await self._dead_letter_refused(fresh, outcomes)
        self._account(fresh, outcomes, unpublished)
        crash_point("after_publish")  # before Faust acknowledges the batch and commits its offsets

    async def _accept(self, record: Record) -> UserRegistered | None:
        """The validated event, or None when the record was skipped or dead-lettered."""
        try:
            # a new schema id may need the registry: that is retried like any transient failure
            document = await with_backoff(functools.partial(self.decode, record.value), self.backoff, "decode")
            event_type = event_type_of(document)
            if event_type != USER_REGISTERED:
                metrics.events_ignored_total.labels(event_type=metrics.safe_label(event_type)).inc()
                return None
            return parse_user_registered(document)
        except InvalidEvent as error:
            logger.warning("rejected record %s/%d@%d: %s", *record.origin, error)
            metrics.customer_created_total.labels(status="rejected").inc()
            await self._dead_letter(record, error, attempts=1)
            return None
        except RetriesExhausted as exhausted:
            logger.error("could not decode record %s/%d@%d: %s", *record.origin, exhausted.last)
            await self._dead_letter(record, exhausted.last, exhausted.attempts)
            return None

    async def _create(self, users: list[UserRegistered]) -> list[Outcome]:
        started = time.perf_counter()

        def note_retry(attempt: int, error: Exception) -> None:
            metrics.processing_attempts_total.labels(agent="user_registered", outcome="retry").inc()

        outcomes = await with_backoff(
            lambda: create_customers(users, self.store, self.now), self.backoff, "create customers", note_retry
        )
        metrics.processing_attempts_total.labels(agent="user_registered", outcome="ok").inc()
        metrics.customer_creation_duration_seconds.observe(time.perf_counter() - started)
        return outcomes

    async def _publish(self, batch: list[tuple[Record, UserRegistered]], outcomes: list[Outcome]) -> set[UUID]:
        """Publish what the outcomes ask for; return the input eventIds dead-lettered for want of Kafka."""
        envelopes = [outcome.envelope for outcome in outcomes if outcome.publish and outcome.envelope is not None]
        if not envelopes:
            return set()
        try:
            await with_backoff(
                lambda: self.publisher.publish_customer_registered(envelopes),
                self.backoff,
                "publish CustomerRegistered",
            )
        except RetriesExhausted as exhausted:
            # the customers are committed; their events stay unpublished in the event store and a
            # replay of these inputs from the DLQ publishes them (the redelivery path)
            dead_lettered = set()
            for (record, user), outcome in zip(batch, outcomes, strict=True):
                if outcome.publish:
                    await self._dead_letter(record, exhausted.last, exhausted.attempts)
                    dead_lettered.add(user.event_id)
            return dead_lettered
        event_ids = [UUID(envelope["eventId"]) for envelope in envelopes]
        try:
            await with_backoff(lambda: self.store.mark_published(event_ids), self.backoff, "mark published")
        except RetriesExhausted:
            logger.warning(
                "could not mark %d event(s) published; a redelivery would publish them again", len(event_ids)
            )
        return set()

    def _account(
        self, batch: list[tuple[Record, UserRegistered]], outcomes: list[Outcome], unpublished: set[UUID]
    ) -> None:
        now = self.now()
        for (_record, user), outcome in zip(batch, outcomes, strict=True):
            # not cached: a replay of a record dead-lettered for want of Kafka must publish again
            if outcome.error is not None or user.event_id in unpublished:
                continue
            self.seen.add(user.event_id)
            status = "created" if outcome.created else "duplicate"
            metrics.customer_created_total.labels(status=status).inc()
            metrics.event_processing_lag_seconds.labels(event_type=USER_REGISTERED).observe(
                max(0.0, (now - user.timestamp).total_seconds())
            )
            if outcome.created and outcome.envelope is not None:
                logger.info(
                    "customer %s created as %s for user %s (event %s)",
                    outcome.customer_id,
                    outcome.envelope["payload"]["customerNumber"],
                    user.user_id,
                    user.event_id,
                )

    async def _dead_letter_refused(self, batch: list[tuple[Record, UserRegistered]], outcomes: list[Outcome]) -> None:
        for (record, _), outcome in zip(batch, outcomes, strict=True):
            if outcome.error is not None:
                logger.warning("record %s/%d@%d refused by the store: %s", *record.origin, outcome.error)
                metrics.customer_created_total.labels(status="rejected").inc()
                await self._dead_letter(record, outcome.error, attempts=1)

    async def _dead_letter(self, record: Record, error: BaseException, attempts: int) -> None:
        metrics.dead_lettered_total.labels(error_class=type(error).__name__).inc()
        await with_backoff(
            lambda: self.publisher.dead_letter(
                record.key, record.value, record.origin, error, attempts, record.headers
            ),
            self.backoff,
            "dead-letter",
        )


@dataclass
class CustomerEventProjector:
    """Projects CustomerRegistered events into the read model; retries until MongoDB takes them."""

    source: ProfileSource
    read_model: ReadModel
    decode: Decoder
    backoff: Sequence[float]

    async def handle(self, records: Sequence[Record]) -> None:
        """Project a batch; an unexpected error is logged and counted (the event store can rebuild the read model)."""
        try:
            await self._handle(records)
        except Exception:  # deliberately broad: raising would let Faust acknowledge the batch anyway
            logger.exception("unexpected error projecting %d record(s)", len(records))
            metrics.dead_lettered_total.labels(error_class="ProjectionError").inc(len(records))

    async def _handle(self, records: Sequence[Record]) -> None:
        envelopes = []
        for record in records:
            try:
                document = await with_backoff(functools.partial(self.decode, record.value), self.backoff, "decode")
            except RetriesExhausted as exhausted:
                logger.error("skipping undecodable record %s/%d@%d: %s", *record.origin, exhausted.last)
                continue
            except PermanentError as error:
                logger.warning("skipping unreadable record %s/%d@%d on customer.events: %s", *record.origin, error)
                continue
            if isinstance(document, dict):
                envelopes.append(document)
        if not envelopes:
            return
        started = time.perf_counter()
        failures = 0

        def note_retry(attempt: int, error: Exception) -> None:
            nonlocal failures
            failures += 1
            metrics.processing_attempts_total.labels(agent="project_customer", outcome="retry").inc()

        while True:
            try:
                await with_backoff(
                    lambda: project_customers(envelopes, self.source, self.read_model),
                    self.backoff,
                    "project read model",
                    note_retry,
                )
                if failures:
                    logger.info(
                        "read model projection recovered after %d failed attempt(s), %.1f s",
                        failures,
                        time.perf_counter() - started,
                    )
                break
            except PermanentError as error:
                # the read model disagrees with the command store; rebuilding it repairs that
                logger.error("read model refused a projection: %s", error)
                metrics.dead_lettered_total.labels(error_class=type(error).__name__).inc()
                break
            except RetriesExhausted as exhausted:
                failures += 1
                # the read model can always be rebuilt, but nothing may be skipped: keep trying
                logger.error(
                    "read model projection still failing after %d attempts: %s", exhausted.attempts, exhausted.last
                )
        metrics.read_model_projection_duration_seconds.observe(time.perf_counter() - started)
        for envelope in envelopes:
            try:
                lag = (datetime.now(UTC) - parse_rfc3339(str(envelope.get("timestamp")))).total_seconds()
            except ValueError:
                continue
            metrics.event_processing_lag_seconds.labels(event_type="CustomerRegistered").observe(max(0.0, lag))
