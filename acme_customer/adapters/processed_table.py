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
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

from acme_customer.adapters.kafka import CONSUMER_GROUP

TABLE_NAME = "processed-event-ids"
# Faust names a table's changelog <app id>-<table>-changelog; it must have as many partitions as
# identity.user.events, one for one (``topics ensure --partitions N`` grows both)
CHANGELOG_TOPIC = f"{CONSUMER_GROUP}-{TABLE_NAME}-changelog"


def changelog_configs(retention_s: float) -> dict[str, str]:
    """The changelog topic's settings: compacted, and nothing older than the retention kept."""
    return {"cleanup.policy": "compact,delete", "retention.ms": str(int(retention_s * 1000))}


class TableCache:
    """``SeenEvents`` over a Faust table with the in-memory store."""

    def __init__(self, table: Any, retention_s: float, clock: Callable[[], float] = time.time) -> None:
        self.table = table
        self.retention_s = retention_s
        self.clock = clock

    def __contains__(self, event_id: object) -> bool:
        return str(event_id) in self.table.data

    def __len__(self) -> int:
        return len(self.table.data)

    def add(self, event_id: UUID, partition: int) -> None:
        key, now = str(event_id), self.clock()
        self.table.data[key] = now
        self.table.send_changelog(partition, key, now)

    def expire(self) -> int:
        """Drop entries older than the retention from memory (the changelog expires on its own)."""
        oldest = self.clock() - self.retention_s
        stale = [key for key, at in self.table.data.items() if not isinstance(at, int | float) or at < oldest]
        for key in stale:
            del self.table.data[key]
        return len(stale)
