"""Consumer lag per partition: the log's end offset minus the group's committed offset.

The committed offsets are asked of the group coordinator (an admin client of this module's own),
not taken from the worker's memory: a partition whose records are stuck in retry has nothing
committed, so its lag keeps rising while producers write to it, which is the signal an operator
alerts on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from acme_customer.adapters.kafka_security import client_options
from acme_customer.config import KafkaSecurity


def lag_of(end_offsets: Mapping[Any, int], committed: Mapping[Any, int | None]) -> dict[Any, int]:
    """Records not yet committed, per partition (all of them when the group never committed)."""
    return {tp: max(0, end - (committed.get(tp) or 0)) for tp, end in end_offsets.items()}


class GroupOffsets:
    """The committed offsets of one consumer group."""

    def __init__(self, bootstrap_servers: str, group: str, security: KafkaSecurity | None = None) -> None:
        self.group = group
        self._admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap_servers, **client_options(security or KafkaSecurity())
        )
        self._started = False

    async def committed(self, partitions: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int | None]:
        wanted = [TopicPartition(topic, partition) for topic, partition in partitions]
        if not wanted:
            return {}
        if not self._started:
            await self._admin.start()
            self._started = True
        found = await self._admin.list_consumer_group_offsets(self.group, partitions=wanted)
        return {
            (tp.topic, tp.partition): (found[tp].offset if tp in found and found[tp].offset >= 0 else None)
            for tp in wanted
        }

    async def close(self) -> None:
        if self._started:
            await self._admin.close()
            self._started = False
