"""Partition lanes: a partition whose records wait for a retry holds back only itself (AC-09).

Batches are taken across all the worker's partitions (one transaction for many records is
what makes the service fast). When an attempt leaves records unfinished for a transient
reason, their partition leaves the shared batches for a *lane* of its own: the lane retries
them with the backoff schedule, keeps every later record of the partition behind them (the
partition's order), and rejoins when it has caught up. The other partitions go on in the
shared batches meanwhile.

Acknowledgements follow the partition's order: a record is acknowledged only when it and
every record before it in its partition are finished, so the committed offset never passes
a record still waiting.

When the consumer stops or gives its partitions away (``halt``), lanes are abandoned: their
records are not acknowledged, so they are delivered again from the committed offset, to
this worker or another; redoing them is harmless (idempotency).

Nothing here knows Faust: a delivery carries its own ``ack`` and ``release`` callbacks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from acme_customer.logs import log_fields
from acme_customer.stream.records import Record
from acme_customer.stream.retry import Attempts, Unfinished, retry_unfinished

logger = logging.getLogger(__name__)
Partition = tuple[str, int]


@dataclass(frozen=True)
class Delivery:
    """A consumed record and what to do with it once finished (``ack``) or abandoned (``release``)."""

    record: Record
    ack: Callable[[], Awaitable[object]]
    release: Callable[[], None] = lambda: None

    @property
    def partition(self) -> Partition:
        return (self.record.topic, self.record.partition)


@dataclass(eq=False)
class _Lane:
    partition: Partition
    waiting: list[Delivery]  # in order; acknowledged together when the lane's work is done
    unfinished: Unfinished | None
    backlog: list[Delivery] = field(default_factory=list)  # arrived while the lane was busy
    halted: bool = False
    task: asyncio.Task[None] | None = None


class PartitionLanes:
    """Runs batches for the agent so that a retry holds back only its own partition.

    ``accepting`` says whether the consumer still owns its partitions (False while Faust
    stops or rebalances); ``halt`` abandons every lane.

    A partition in a lane keeps being fetched: its new records queue in the lane's backlog.
    Pausing it instead is unsafe with faust-streaming 0.15.3, whose fetch loop drops the
    already-fetched records of a partition paused mid-iteration, then counts the skipped
    offsets as a gap it may commit past (docs/reliability.md). The backlog is bounded by the
    retry schedule times the partition's rate.
    """

    def __init__(
        self,
        handler: Attempts,
        delays: Sequence[float],
        batch_size: int,
        accepting: Callable[[], bool] = lambda: True,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        agent: str = "register_customer",
    ):
        self.handler = handler
        self.delays = list(delays)
        self.batch_size = batch_size
        self.agent = agent
        self._sleep = sleep  # between attempts; a halt cancels it
        self._accepting = accepting
        self._lanes: dict[Partition, _Lane] = {}

    @property
    def lanes(self) -> frozenset[Partition]:
        """The partitions now in a lane of their own."""
        return frozenset(self._lanes)

    async def submit(self, deliveries: Sequence[Delivery]) -> None:
        """Process a batch: records of partitions in a lane queue behind it, the rest are attempted now."""
        if not self._accepting():
            # the consumer is giving its partitions up: what it fetched comes back from the committed offset
            for delivery in deliveries:
                delivery.release()
            return
        shared: list[Delivery] = []
        for delivery in deliveries:
            lane = self._lanes.get(delivery.partition)
            if lane is not None:
                lane.backlog.append(delivery)
            else:
                shared.append(delivery)
        if not shared:
            return
        unfinished = await self.handler.attempt([delivery.record for delivery in shared])
        if unfinished is None:
            await _ack(shared)
            return
        left = {record.origin for record in unfinished.records}
        for partition, in_order in _by_partition(shared).items():
            first = next((i for i, delivery in enumerate(in_order) if delivery.record.origin in left), None)
            if first is None:
                await _ack(in_order)
                continue
            await _ack(in_order[:first])
            waiting = in_order[first:]
            records = tuple(delivery.record for delivery in waiting if delivery.record.origin in left)
            self._open(partition, waiting, Unfinished(records, unfinished.error))

    def halt(self) -> None:
        """Abandon every lane: stop retrying, acknowledge nothing, release every record held."""
        lanes, self._lanes = list(self._lanes.values()), {}
        for lane in lanes:
            lane.halted = True
            if lane.task is not None:
                lane.task.cancel()
            for delivery in [*lane.waiting, *lane.backlog]:
                delivery.release()
        if lanes:
            logger.info(
                "abandoned %d partition lane(s); their records will be delivered again",
                len(lanes),
                extra=log_fields(outcome="abandoned"),
            )

    def clear(self) -> None:
        """Faust's flow-control hook: called when it suspends the flow (stop, rebalance) and on resume."""
        if not self._accepting():
            self.halt()

    async def wait_idle(self) -> None:
        """Wait until no lane is left (tests and benchmarks)."""
        while tasks := [lane.task for lane in self._lanes.values() if lane.task is not None and not lane.task.done()]:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _open(self, partition: Partition, waiting: list[Delivery], unfinished: Unfinished) -> None:
        lane = _Lane(partition, waiting, unfinished)
        if not self._accepting():
            for delivery in waiting:
                delivery.release()
            return
        self._lanes[partition] = lane
        logger.warning(
            "partition %s/%d waits for a retry (%d record(s)); the other partitions go on",
            *partition,
            len(unfinished.records),
            extra=log_fields(partition, outcome="retry"),
        )
        lane.task = asyncio.get_running_loop().create_task(
            self._drive(lane), name=f"lane-{partition[0]}-{partition[1]}"
        )

    async def _drive(self, lane: _Lane) -> None:
        try:
            while True:
                await retry_unfinished(self.handler, lane.unfinished, self.delays, self._sleep, self.agent)
                if lane.halted:
                    return
                await _ack(lane.waiting)
                if not lane.backlog:
                    del self._lanes[lane.partition]
                    logger.info(
                        "partition %s/%d rejoined the shared batches",
                        *lane.partition,
                        extra=log_fields(lane.partition, outcome="rejoined"),
                    )
                    return
                lane.waiting = lane.backlog[: self.batch_size]
                del lane.backlog[: self.batch_size]
                lane.unfinished = await self.handler.attempt([delivery.record for delivery in lane.waiting])
        except Exception:
            # The handler never raises for a record, so this is a bug. The lane stays, holding
            # its records and those arriving behind them unacknowledged: the partition stalls
            # (visible as consumer lag) until a restart or a rebalance delivers them again.
            # Releasing them and letting the partition go on could lose one: faust-streaming
            # 0.15.3 commits past a single unacknowledged record at the head of a partition.
            logger.exception(
                "partition lane %s/%d failed; the partition stalls until a restart",
                *lane.partition,
                extra=log_fields(lane.partition, outcome="stalled"),
            )


def _by_partition(deliveries: Sequence[Delivery]) -> dict[Partition, list[Delivery]]:
    grouped: dict[Partition, list[Delivery]] = {}
    for delivery in deliveries:
        grouped.setdefault(delivery.partition, []).append(delivery)
    return grouped


async def _ack(deliveries: Sequence[Delivery]) -> None:
    for delivery in deliveries:
        await delivery.ack()
