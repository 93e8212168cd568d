"""Finding the record an unexpected error belongs to, and dead-lettering records with their reasons.

A batch is one transaction (or one bulk write): when it fails with an error nobody planned
for, any of its records may be the cause. Trying each record alone tells: the one that
fails alone is dead-lettered (``FailedAlone``) and its valid neighbours cost one extra
attempt. When a second record fails alone too, the fault is no record's (a defect, a broken
dependency): nothing more is tried, and what is left waits for the retry schedule as an
``UnexplainedFailure``, to be dead-lettered only when the schedule is spent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from acme_customer import observability as metrics
from acme_customer.errors import FailedAlone, TransientError, UnexplainedFailure
from acme_customer.logs import log_fields
from acme_customer.stream.records import Header, Record
from acme_customer.stream.retry import Unfinished

logger = logging.getLogger(__name__)
Attempt = Callable[[Sequence[Record]], Awaitable[Unfinished | None]]


class DeadLetterSink(Protocol):
    """Where a record goes that cannot be processed: its topic's DLQ, waiting for Kafka's acknowledgement."""

    async def dead_letter(
        self,
        key: bytes | None,
        value: bytes | None,
        origin: tuple[str, int, int],
        error: BaseException,
        attempts: int,
        headers: list[Header] | None = None,
    ) -> None: ...


@dataclass(frozen=True)
class Isolated:
    """What trying records one at a time found: what is left for a retry, and who failed alone."""

    unfinished: Unfinished | None
    failed_alone: list[tuple[Record, FailedAlone]]


async def attempt_alone(records: Sequence[Record], attempt: Attempt, error: BaseException) -> Isolated:
    """Attempt each record alone, in order, after ``error`` struck the batch they shared."""
    if len(records) == 1:  # alone already: it may be the record, or not; the schedule decides
        return Isolated(Unfinished(tuple(records), UnexplainedFailure(error)), [])
    position = {record.origin: index for index, record in enumerate(records)}
    left: list[Record] = []
    failed: list[tuple[Record, FailedAlone]] = []
    reason: TransientError | None = None
    held: set[tuple[str, int]] = set()  # a partition with a record left: the rest of it waits behind
    for index, record in enumerate(records):
        if (record.topic, record.partition) in held:
            left.append(record)
            continue
        try:
            unfinished = await attempt([record])
        except Exception as alone:  # deliberately broad: this is where unexpected errors are sorted
            logger.warning(
                "record %s/%d@%d failed alone: %s",
                *record.origin,
                type(alone).__name__,
                extra=log_fields(record.origin, outcome="failed_alone"),
            )
            failed.append((record, FailedAlone(alone)))
            if len(failed) < 2:
                continue
            # two records fail alone: it is not theirs; keep them and the rest for the schedule
            left.extend(failed_record for failed_record, _ in failed)
            left.extend(records[index + 1 :])
            failed, reason = [], UnexplainedFailure(alone)
            break
        if unfinished is not None:
            left.extend(unfinished.records)
            held.add((record.topic, record.partition))
            reason = unfinished.error
    if not left:
        return Isolated(None, failed)
    assert reason is not None
    return Isolated(Unfinished(tuple(sorted(left, key=lambda record: position[record.origin])), reason), failed)


async def isolate(
    records: Sequence[Record], attempt: Attempt, error: BaseException, sink: DeadLetterSink
) -> tuple[Unfinished | None, int]:
    """``attempt_alone``, then dead-letter who failed alone; return what is left and how many Kafka took."""
    isolated = await attempt_alone(records, attempt, error)
    failed = isolated.failed_alone
    refused = await dead_letter_all(sink, [record for record, _ in failed], [reason for _, reason in failed], 1)
    dead_lettered = len(failed) - (len(refused.records) if refused else 0)
    return merged(isolated.unfinished, refused, records), dead_lettered


async def dead_letter_all(
    sink: DeadLetterSink, records: Sequence[Record], reasons: Sequence[BaseException], attempts: int
) -> Unfinished | None:
    """Dead-letter each record with its reason; return those Kafka refused.

    All are sent before any acknowledgement is awaited: one round trip for a batch, not one each.
    A dead letter is counted only once Kafka has it.
    """
    sent = await asyncio.gather(
        *(
            sink.dead_letter(record.key, record.value, record.origin, reason, attempts, record.headers)
            for record, reason in zip(records, reasons, strict=True)
        ),
        return_exceptions=True,
    )
    left: list[Record] = []
    failure: TransientError | None = None
    for record, reason, outcome in zip(records, reasons, sent, strict=True):
        if isinstance(outcome, TransientError):
            failure = outcome
            left.append(record)
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            metrics.dead_lettered_total.labels(error_class=type(reason).__name__).inc()
    if failure is None:
        return None
    logger.error("Kafka refused %d dead letter(s): %s", len(left), failure, extra=log_fields(outcome="held"))
    return Unfinished(tuple(left), failure)


def merged(first: Unfinished | None, second: Unfinished | None, order: Sequence[Record]) -> Unfinished | None:
    """Both sets of unfinished records as one, in the batch's order (the first's reason wins)."""
    if first is None or second is None:
        return first or second
    position = {record.origin: index for index, record in enumerate(order)}
    by_origin = {record.origin: record for record in (*first.records, *second.records)}
    records = sorted(by_origin.values(), key=lambda record: position[record.origin])
    return Unfinished(tuple(records), first.error)
