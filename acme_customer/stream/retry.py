"""Retries with exponential backoff for transient failures (AC-0002-03-09).

A handler attempts a batch once and reports what it could not finish (``Unfinished``);
``retry_unfinished`` waits the next delay of the schedule and attempts that again, until
nothing is left or the schedule ends, when the handler gives up (the identity handler
dead-letters, the projector keeps trying). The worker's partition lanes run this loop per
partition; ``handle`` runs it in place.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from acme_customer import observability as metrics
from acme_customer.errors import TransientError
from acme_customer.logs import log_fields
from acme_customer.stream.records import Record

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Unfinished:
    """The records one attempt could not finish for a transient reason, and that reason.

    Attempting them again is safe: every step is idempotent (the ``processed_events`` key,
    the stored event re-published when it never reached Kafka, the version-guarded read model).
    """

    records: tuple[Record, ...]
    error: TransientError


class Attempts(Protocol):
    """What the retry loop drives: one attempt at a time, then a way to give up."""

    async def attempt(self, records: Sequence[Record]) -> Unfinished | None: ...

    async def give_up(self, unfinished: Unfinished, attempts: int) -> Unfinished | None: ...


async def retry_unfinished(
    handler: Attempts,
    unfinished: Unfinished | None,
    delays: Sequence[float],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    agent: str = "register_customer",
) -> None:
    """Attempt ``unfinished`` again after each delay; after the last, let the handler give up.

    Each retry is logged and counted (``processing_attempts_total``). What the handler still
    cannot let go of (a dead letter Kafka refused, a projection that must not be skipped) is
    handed back to it at the last delay until it can: nothing is acknowledged before it is
    somewhere.
    """
    if unfinished is None:
        return
    started = time.monotonic()
    attempt = 1
    while unfinished is not None:
        if attempt > len(delays):
            metrics.processing_attempts_total.labels(agent=agent, outcome="exhausted").inc()
            while (refused := await handler.give_up(unfinished, attempt)) is not None:
                # what is handed back carries the reason it was given up for, not the later refusal
                unfinished = Unfinished(refused.records, unfinished.error)
                await sleep(delays[-1] if delays else 1.0)
            return
        delay = delays[attempt - 1]
        logger.warning(
            "%d record(s) failed (attempt %d of %d): %s; retrying in %.1fs",
            len(unfinished.records),
            attempt,
            len(delays) + 1,
            unfinished.error,
            delay,
            extra=log_fields(outcome="retry"),
        )
        metrics.processing_attempts_total.labels(agent=agent, outcome="retry").inc()
        await sleep(delay)
        attempt += 1
        unfinished = await handler.attempt(unfinished.records)
    waited = time.monotonic() - started
    logger.info(
        "%s recovered at attempt %d, %.1f s after the first failure",
        agent,
        attempt,
        waited,
        extra=log_fields(outcome="recovered", duration_ms=waited * 1000),
    )
