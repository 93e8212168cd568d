"""The register-customer flow at the stream edge: what the ``register_customer`` agent runs per batch.

Decode and validate each record (a bad one goes to the DLQ at once), skip other event types,
register the customers (``service_layer.register_customers``: one transaction), publish their
CustomerRegistered events and wait for Kafka, then dead-letter what was refused. The batch is
finished (and may be acknowledged) only when this returns.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

from acme_customer import observability as metrics
from acme_customer.domain.events import USER_REGISTERED, UserRegistered
from acme_customer.domain.validation import event_type_of, parse_user_registered
from acme_customer.errors import FailedAlone, InvalidEvent, TransientError
from acme_customer.logs import log_fields
from acme_customer.service_layer.ports import CustomerStore, EventPublisher
from acme_customer.service_layer.register_customers import Outcome, publish_registrations, register_customers
from acme_customer.stream.isolation import DeadLetterSink, dead_letter_all, isolate, merged
from acme_customer.stream.records import Record
from acme_customer.stream.retry import Unfinished, retry_unfinished

logger = logging.getLogger(__name__)
Decoder = Callable[[bytes | None], Awaitable[Any]]  # the codec at the edge, for one topic
AGENT = "register_customer"


class SeenEvents(Protocol):
    """Input eventIds known to be processed (committed and published): a cache, guarding nothing.

    The guard is the ``processed_events`` primary key; a hit only saves the database round trip
    of a redelivery. ``add`` is called only after the commit and the publish, with the input
    partition the event came from (a Faust table keeps the entry with that partition).
    """

    def __contains__(self, event_id: object) -> bool: ...

    def add(self, event_id: UUID, partition: int) -> None: ...


class ProcessedCache:
    """``SeenEvents`` in this process's memory (``PROCESSED_CACHE=memory``): the most recent ones."""

    def __init__(self, capacity: int = 100_000):
        self.capacity = capacity
        self._seen: OrderedDict[UUID, None] = OrderedDict()

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._seen

    def add(self, event_id: UUID, partition: int) -> None:
        self._seen[event_id] = None
        self._seen.move_to_end(event_id)
        while len(self._seen) > self.capacity:
            self._seen.popitem(last=False)


@dataclass
class RegisterCustomerHandler:
    """Turns UserRegistered records into customers, one attempt at a time.

    ``attempt`` tries a batch once and returns what it could not finish for a transient
    reason; the caller decides when to try again (``handle`` waits in place, the worker's
    partition lanes let the other partitions go on meanwhile). Within a batch, a record
    that cannot be finished holds back the later records of its partition, so the
    partition's order is kept.
    """

    store: CustomerStore
    publisher: EventPublisher  # CustomerRegistered out
    decode: Decoder
    backoff: Sequence[float]
    dead_letters: DeadLetterSink  # what cannot be registered, to the DLQ
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    seen: SeenEvents = field(default_factory=ProcessedCache)
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    async def handle(self, records: Sequence[Record]) -> None:
        """Process a batch to the end, retrying in place: committed and published, or dead-lettered."""
        await retry_unfinished(self, await self.attempt(records), self.backoff, self.sleep)

    async def attempt(self, records: Sequence[Record]) -> Unfinished | None:
        """Try the batch once; return what is left for a transient reason, or None when all is done.

        Never raises for a record: an unexpected error while registering is narrowed down
        record by record (``_register_one_by_one``); this catch is the last resort for one
        anywhere else, and retries the whole batch the same way.
        """
        try:
            return await self._attempt(records)
        except Exception as error:  # deliberately broad: see the docstring
            logger.exception(
                "unexpected error in a batch of %d record(s); trying them one at a time",
                len(records),
                extra=log_fields(outcome="isolating"),
            )
            left, dead_lettered = await isolate(records, self._attempt, error, self.dead_letters)
            metrics.customer_created_total.labels(status="rejected").inc(dead_lettered)
            return left

    async def give_up(self, unfinished: Unfinished, attempts: int) -> Unfinished | None:
        """Dead-letter records whose retries are exhausted; return those Kafka refused too.

        Several records are first tried once more one at a time (in order), so that a record
        that keeps failing does not take the neighbours it shared a transaction with to the DLQ.
        Two failures in a row mean the dependency is down for all: the rest go as they are.
        """
        logger.error(
            "giving up on %d record(s) after %d attempts: %s",
            len(unfinished.records),
            attempts,
            unfinished.error,
            extra=log_fields(outcome="exhausted"),
        )
        doomed: list[Record] = []
        reasons: list[BaseException] = []
        if len(unfinished.records) > 1:
            in_a_row = 0
            for index, record in enumerate(unfinished.records):
                if in_a_row >= 2:
                    rest = unfinished.records[index:]
                    doomed.extend(rest)
                    reasons.extend([unfinished.error] * len(rest))
                    break
                left = await self.attempt([record])
                in_a_row = 0 if left is None else in_a_row + 1
                if left is not None:
                    doomed.extend(left.records)
                    reasons.extend([left.error] * len(left.records))
        else:
            doomed, reasons = list(unfinished.records), [unfinished.error]
        refused = await dead_letter_all(self.dead_letters, doomed, reasons, attempts)
        # dead-lettered after the retries ran out: not the record's fault, as far as anyone knows
        metrics.customer_created_total.labels(status="failed").inc(
            len(doomed) - len(refused.records if refused else ())
        )
        return refused

    async def _attempt(self, records: Sequence[Record]) -> Unfinished | None:
        users, unfinished = await self._accept_all(records)
        fresh = [(record, user) for record, user in users if user.event_id not in self.seen]
        if len(users) > len(fresh):  # found in the cache: no database round trip
            metrics.customer_created_total.labels(status="duplicate").inc(len(users) - len(fresh))
            metrics.processed_cache_hits_total.inc(len(users) - len(fresh))
        if fresh:
            unfinished = merged(unfinished, await self._register(fresh), records)
        return unfinished

    async def _accept_all(
        self, records: Sequence[Record]
    ) -> tuple[list[tuple[Record, UserRegistered]], Unfinished | None]:
        """The valid UserRegistered events, and what could not be read yet.

        Bad records are dead-lettered and other types skipped on the way. A record that cannot
        be read yet (the registry is down, Kafka refused its dead letter) is left, and the rest
        of its partition waits behind it, so the partition's order is kept.
        """
        users: list[tuple[Record, UserRegistered]] = []
        left: list[Record] = []
        error: TransientError | None = None
        held: set[tuple[str, int]] = set()
        for record in records:
            if (record.topic, record.partition) in held:
                left.append(record)
                continue
            try:
                user = await self._accept(record)
            except TransientError as failure:
                error = failure
                left.append(record)
                held.add((record.topic, record.partition))
                continue
            if user is not None:
                users.append((record, user))
        return users, (Unfinished(tuple(left), error) if error is not None else None)

    async def _accept(self, record: Record) -> UserRegistered | None:
        """The validated event, or None when the record was skipped or dead-lettered."""
        try:
            document = await self.decode(record.value)
            event_type = event_type_of(document)
            if event_type != USER_REGISTERED:
                metrics.events_ignored_total.labels(event_type=metrics.event_type_label(event_type)).inc()
                return None
            return parse_user_registered(document)
        except InvalidEvent as error:
            rejected = log_fields(record.origin, outcome="rejected")
            logger.warning("rejected record %s/%d@%d: %s", *record.origin, error, extra=rejected)
            await self._dead_letter(record, error, attempts=1)
        except (TransientError, asyncio.CancelledError):
            raise
        except Exception as error:  # the codec or validation failed on this record alone: it is the record's
            rejected = log_fields(record.origin, outcome="rejected")
            logger.exception("unexpected error reading record %s/%d@%d", *record.origin, extra=rejected)
            await self._dead_letter(record, FailedAlone(error), attempts=1)
        metrics.customer_created_total.labels(status="rejected").inc()
        return None

    async def _register(self, fresh: list[tuple[Record, UserRegistered]], isolate: bool = True) -> Unfinished | None:
        """Register the customers (one transaction), dead-letter what the store refused, publish the events."""
        in_order = [record for record, _ in fresh]
        started = time.perf_counter()
        try:
            outcomes = await self._create([user for _, user in fresh])
        except TransientError as error:
            return Unfinished(tuple(in_order), error)
        except Exception as error:  # unexpected, and nothing of this batch is settled yet
            if not isolate:
                raise
            logger.exception(
                "unexpected error registering %d customer(s); trying them one at a time",
                len(fresh),
                extra=log_fields(outcome="isolating"),
            )
            return await self._register_one_by_one(fresh, error)
        refused_left = await self._dead_letter_refused(fresh, outcomes)
        # each CustomerRegistered continues the trace its UserRegistered record came with
        traces = {user.event_id: context for record, user in fresh if (context := record.trace_context)}
        try:
            await publish_registrations(outcomes, self.publisher, self.store, traces)
        except TransientError as error:
            # committed but not on customer.events: the next attempt publishes the stored events
            unpublished = {outcome.input_event_id for outcome in outcomes if outcome.publish}
            self._account(fresh, outcomes, unpublished, started)
            left = tuple(record for record, user in fresh if user.event_id in unpublished)
            return merged(Unfinished(left, error), refused_left, in_order)
        self._account(fresh, outcomes, set(), started)
        return refused_left

    async def _register_one_by_one(
        self, fresh: list[tuple[Record, UserRegistered]], error: BaseException
    ) -> Unfinished | None:
        """Register each record alone, so that only one that fails alone goes to the DLQ (``isolation``)."""
        users = {record.origin: user for record, user in fresh}
        in_order = [record for record, _ in fresh]

        async def alone(records: Sequence[Record]) -> Unfinished | None:
            return await self._register([(record, users[record.origin]) for record in records], isolate=False)

        left, dead_lettered = await isolate(in_order, alone, error, self.dead_letters)
        metrics.customer_created_total.labels(status="rejected").inc(dead_lettered)
        return left

    async def _create(self, users: list[UserRegistered]) -> list[Outcome]:
        started = time.perf_counter()
        outcomes = await register_customers(users, self.store, self.now)
        metrics.processing_attempts_total.labels(agent=AGENT, outcome="ok").inc()
        metrics.customer_creation_duration_seconds.observe(time.perf_counter() - started)
        return outcomes

    def _account(
        self,
        batch: list[tuple[Record, UserRegistered]],
        outcomes: list[Outcome],
        unpublished: set[UUID],
        started: float,
    ) -> None:
        """Count and log what became of each record; ``started``: when its batch's transaction began."""
        now = self.now()
        duration_ms = (time.perf_counter() - started) * 1000  # committed and published: the batch's time here
        lag = metrics.event_processing_lag_seconds.labels(event_type=USER_REGISTERED)
        counts = {"created": 0, "duplicate": 0}
        for (record, user), outcome in zip(batch, outcomes, strict=True):
            # not cached: an attempt or a replay of a record not yet on customer.events must publish again
            if outcome.error is not None or user.event_id in unpublished:
                continue
            self.seen.add(user.event_id, record.partition)
            counts["created" if outcome.created else "duplicate"] += 1
            lag.observe(max(0.0, (now - user.timestamp).total_seconds()))
            if outcome.created and outcome.event is not None:
                logger.info(
                    "customer %s created as %s for user %s",
                    outcome.customer_id,
                    outcome.event.customer_number,
                    user.user_id,
                    extra=log_fields(
                        record.origin,
                        event_id=user.event_id,
                        customer_id=outcome.customer_id,
                        outcome="created",
                        duration_ms=duration_ms,
                    ),
                )
        for status, count in counts.items():
            if count:
                metrics.customer_created_total.labels(status=status).inc(count)

    async def _dead_letter_refused(
        self, batch: list[tuple[Record, UserRegistered]], outcomes: list[Outcome]
    ) -> Unfinished | None:
        refused = [
            (record, user, outcome.error)
            for (record, user), outcome in zip(batch, outcomes, strict=True)
            if outcome.error
        ]
        if not refused:
            return None
        for record, user, error in refused:
            logger.warning(
                "record %s/%d@%d refused by the store: %s",
                *record.origin,
                error,
                extra=log_fields(record.origin, event_id=user.event_id, outcome="rejected"),
            )
        left = await dead_letter_all(
            self.dead_letters, [record for record, _, _ in refused], [error for _, _, error in refused], 1
        )
        metrics.customer_created_total.labels(status="rejected").inc(len(refused) - len(left.records if left else ()))
        return left

    async def _dead_letter(self, record: Record, error: BaseException, attempts: int) -> None:
        """Dead-letter one record; raise the TransientError when Kafka refused it."""
        refused = await dead_letter_all(self.dead_letters, [record], [error], attempts)
        if refused is not None:
            raise refused.error
