"""Retry with exponential backoff for transient failures (AC-0002-03-09)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from acme_customer.errors import TransientError

T = TypeVar("T")
logger = logging.getLogger(__name__)


class RetriesExhausted(Exception):
    """Every attempt failed; ``attempts`` counts them and ``__cause__`` is the last error."""

    def __init__(self, attempts: int, last: TransientError):
        super().__init__(f"{attempts} attempts failed; last: {last}")
        self.attempts = attempts
        self.last = last


async def with_backoff(
    operation: Callable[[], Awaitable[T]],
    delays: Sequence[float],
    what: str,
    on_retry: Callable[[int, TransientError], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Run ``operation``; on a TransientError wait ``delays[i]`` and try again, at most len(delays) times."""
    attempt = 1
    while True:
        try:
            return await operation()
        except TransientError as error:
            if attempt > len(delays):
                raise RetriesExhausted(attempt, error) from error
            delay = delays[attempt - 1]
            logger.warning(
                "%s failed (attempt %d of %d): %s; retrying in %.1fs", what, attempt, len(delays) + 1, error, delay
            )
            if on_retry is not None:
                on_retry(attempt, error)
            await sleep(delay)
            attempt += 1
