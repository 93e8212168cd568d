"""The processed-eventId cache as a Faust table: it survives restarts and follows its partitions.

An entry (eventId -> when it was processed, epoch seconds) is kept in the changelog partition
of the input record it belongs to, so the worker that is given a partition of
``identity.user.events`` recovers exactly the entries of that partition with it, and knows which
of the redeliveries it is about to receive were already processed.

Faust writes a table entry to the changelog partition of the *current event*; the agent takes
its records in batches (``noack_take``), where there is no current event, and Faust refuses
(faust-streaming #497, #300). This cache therefore does both halves of a write itself, through
the table's public parts: the local store (``table.data``) and ``table.send_changelog`` with the
record's own partition. Entries expire: the changelog topic deletes segments older than the
retention (``cleanup.policy=compact,delete``), and ``expire`` drops older entries from memory.

The changelog writes go through Faust's producer buffer; ``saved`` waits for them before the
batch's records are acknowledged. Without it, a kill -9 lost the entries of exactly the
records it left uncommitted (both were "the last second's"), so the next worker found 1 of
100 redeliveries in the table (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

logger = logging.getLogger(__name__)
TABLE_NAME = "processed-event-ids"
SAVE_TIMEOUT_S = 5.0  # a cache: past this the batch goes on, and the entries follow when Kafka takes them


def changelog_configs(retention_s: float) -> dict[str, str]:
    """The changelog topic's settings: compacted, and nothing older than the retention kept."""
    return {"cleanup.policy": "compact,delete", "retention.ms": str(int(retention_s * 1000))}


class TableCache:
    """``SeenEvents`` over a Faust table with the in-memory store."""

    def __init__(
        self,
        table: Any,
        retention_s: float,
        clock: Callable[[], float] = time.time,
        save_timeout_s: float = SAVE_TIMEOUT_S,
    ) -> None:
        self.table = table
        self.retention_s = retention_s
        self.clock = clock
        self.save_timeout_s = save_timeout_s
        self._unsaved: list[asyncio.Future[Any]] = []

    def __contains__(self, event_id: object) -> bool:
        return str(event_id) in self.table.data

    def __len__(self) -> int:
        return len(self.table.data)

    def add(self, event_id: UUID, partition: int) -> None:
        key, now = str(event_id), self.clock()
        self.table.data[key] = now
        self._unsaved.append(self.table.send_changelog(partition, key, now))

    async def saved(self) -> None:
        """Wait (at most ``save_timeout_s``) until Kafka has the changelog entries added so far."""
        unsaved, self._unsaved = self._unsaved, []
        if not unsaved:
            return
        done, pending = await asyncio.wait(unsaved, timeout=self.save_timeout_s)
        failed = [future for future in done if future.cancelled() or future.exception() is not None]
        if pending or failed:
            logger.warning(
                "%d of %d processed-eventId table entries not confirmed by Kafka (%s); going on: "
                "the table is a cache, processed_events the guard",
                len(pending) + len(failed),
                len(unsaved),
                "timed out" if pending else _why(failed[0]),
            )

    def expire(self) -> int:
        """Drop entries older than the retention from memory (the changelog expires on its own)."""
        oldest = self.clock() - self.retention_s
        stale = [key for key, at in self.table.data.items() if not isinstance(at, int | float) or at < oldest]
        for key in stale:
            del self.table.data[key]
        return len(stale)


def _why(future: asyncio.Future[Any]) -> str:
    return "cancelled" if future.cancelled() else type(future.exception()).__name__
