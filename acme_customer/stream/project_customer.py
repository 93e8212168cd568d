"""The projection flow at the stream edge: what the ``project_customer`` agent runs per batch.

CustomerRegistered events from ``customer.events`` become read-model documents
(``service_layer.project_customers``); what cannot be projected goes to ``customer.events.dlq``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from acme_customer import observability as metrics
from acme_customer.domain.clock import parse_rfc3339
from acme_customer.errors import (
    PermanentError,
    ReadModelUnreachable,
    TransientError,
    UnexplainedFailure,
    UnknownCustomer,
)
from acme_customer.logs import log_fields
from acme_customer.service_layer.project_customers import (
    ProfileSource,
    ReadModel,
    project_registrations,
    registered_customer_id,
)
from acme_customer.stream.isolation import DeadLetterSink, dead_letter_all, isolate, merged
from acme_customer.stream.records import Record
from acme_customer.stream.register_customer import Decoder
from acme_customer.stream.retry import Unfinished, retry_unfinished
from acme_customer.stream.trace_context import causes_of

logger = logging.getLogger(__name__)
AGENT = "project_customer"


@dataclass
class CustomerEventProjector:
    """Projects CustomerRegistered events into the read model; retries while MongoDB is down.

    Every record ends projected, skipped as another event type (counted), or on
    ``customer.events.dlq`` with its reason; none is acknowledged otherwise.
    """

    source: ProfileSource
    read_model: ReadModel
    publisher: DeadLetterSink  # for the dead letters
    decode: Decoder
    backoff: Sequence[float]
    probe_interval: float = 0.25
    _unreachable: bool = field(default=False, init=False)  # the last failed attempt found no read model

    async def wait_before_retry(self, delay: float) -> None:
        """Wait ``delay``; after an outage, stop waiting as soon as the read model answers again.

        An outage is a read model that did not answer at the last failure or does not answer
        now: the backlog then drains at once (AC-05). A read model that answers but fails gets
        the whole delay. Why both are asked: docs/reliability.md.
        """
        if not self._unreachable and await self.read_model.ping():
            await asyncio.sleep(delay)
            return
        deadline = time.monotonic() + delay
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(self.probe_interval, left))
            if await self.read_model.ping():
                return

    async def handle(self, records: Sequence[Record]) -> None:
        """Project a batch to the end, retrying in place (the worker's partition lanes retry instead)."""
        await retry_unfinished(self, await self.attempt(records), self.backoff, self.wait_before_retry, agent=AGENT)

    async def attempt(self, records: Sequence[Record]) -> Unfinished | None:
        """Project a batch once; return what is left when MongoDB (or PostgreSQL, or the registry) failed for now.

        Never raises for a record: after an unexpected error the records are tried one at a
        time, and only one that fails alone is dead-lettered.
        """
        try:
            return await self._attempt(records)
        except Exception as error:  # deliberately broad: see the docstring
            logger.exception(
                "unexpected error projecting %d record(s); trying them one at a time",
                len(records),
                extra=log_fields(outcome="isolating"),
            )
            left, _ = await isolate(records, self._attempt, error, self.publisher)
            return left

    async def give_up(self, unfinished: Unfinished, attempts: int) -> Unfinished | None:
        """An outage is waited out (nothing may be skipped); an unexplained failure is dead-lettered."""
        if isinstance(unfinished.error, UnexplainedFailure):
            logger.error(
                "dead-lettering %d record(s) after %d attempts: %s",
                len(unfinished.records),
                attempts,
                unfinished.error,
                extra=log_fields(outcome="exhausted"),
            )
            return await dead_letter_all(
                self.publisher, unfinished.records, [unfinished.error] * len(unfinished.records), attempts
            )
        logger.error(
            "read model projection of %d record(s) still failing after %d attempts, trying on: %s",
            len(unfinished.records),
            attempts,
            unfinished.error,
            extra=log_fields(outcome="retry"),
        )
        return await self.attempt(unfinished.records)

    async def _attempt(self, records: Sequence[Record]) -> Unfinished | None:
        self._unreachable = False
        wanted: list[tuple[Record, dict[str, Any], UUID]] = []
        unreadable: list[Record] = []
        dead: list[tuple[Record, PermanentError]] = []
        error: TransientError | None = None
        for record in records:
            try:
                document = await self.decode(record.value)
                customer_id = registered_customer_id(document)
            except TransientError as failure:  # the registry, for a schema id not cached yet
                error = failure
                unreadable.append(record)
                continue
            except PermanentError as refused:
                logger.warning(
                    "unreadable record %s/%d@%d on customer.events: %s",
                    *record.origin,
                    refused,
                    extra=log_fields(record.origin, outcome="rejected"),
                )
                dead.append((record, refused))
                continue
            if customer_id is None:
                event_type = document.get("eventType")
                metrics.customer_events_ignored_total.labels(
                    event_type=metrics.customer_event_type_label(event_type)
                ).inc()
                continue
            wanted.append((record, document, customer_id))
        if wanted:
            try:
                dead.extend(await self._project(wanted))
            except TransientError as failure:
                self._unreachable = isinstance(failure, ReadModelUnreachable)
                error = failure
                unreadable.extend(record for record, _, _ in wanted)
        letters_left = await dead_letter_all(
            self.publisher, [record for record, _ in dead], [reason for _, reason in dead], 1
        )
        if not unreadable:
            return letters_left
        assert error is not None
        return merged(Unfinished(tuple(unreadable), error), letters_left, records)

    async def _project(self, wanted: list[tuple[Record, dict[str, Any], UUID]]) -> list[tuple[Record, PermanentError]]:
        """Project the customers; return the records to dead-letter (a refused or unknown customer)."""
        started = time.perf_counter()
        # project_read_model continues the records' traces: their parent (one record) or links (several)
        causes = causes_of([record for record, _, _ in wanted])
        try:
            projection = await project_registrations(
                [customer_id for _, _, customer_id in wanted],
                self.source,
                self.read_model,
                parent=causes.parent,
                links=causes.links,
            )
        except PermanentError as refused:
            if len(wanted) > 1:
                raise  # one document of several: attempt() finds which record it is, alone
            record, _, customer_id = wanted[0]
            logger.error(
                "read model refused a projection: %s",
                refused,
                extra=log_fields(record.origin, customer_id=customer_id, outcome="rejected"),
            )
            return [(record, refused)]
        metrics.processing_attempts_total.labels(agent=AGENT, outcome="ok").inc()
        metrics.read_model_projection_duration_seconds.observe(time.perf_counter() - started)
        self._observe_lag([document for _, document, _ in wanted])
        missing = set(projection.missing)
        return [
            (record, UnknownCustomer(f"customer {customer_id} is not in the command store"))
            for record, _, customer_id in wanted
            if customer_id in missing
        ]

    @staticmethod
    def _observe_lag(envelopes: Sequence[dict[str, Any]]) -> None:
        now, histogram = datetime.now(UTC), metrics.event_processing_lag_seconds.labels(event_type="CustomerRegistered")
        for envelope in envelopes:
            try:
                lag = (now - parse_rfc3339(str(envelope.get("timestamp")))).total_seconds()
            except ValueError:
                continue
            histogram.observe(max(0.0, lag))
