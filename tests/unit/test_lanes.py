"""Partition lanes over a scripted handler: who is acknowledged, when, in which order (AC-09)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from acme_customer.errors import StoreUnavailable
from acme_customer.stream.lanes import Delivery, PartitionLanes
from acme_customer.stream.records import Record
from acme_customer.stream.retry import Unfinished

TOPIC = "identity.user.events"
DELAYS = (0.01, 0.01, 0.01, 0.01, 0.01)


def record(partition: int, offset: int) -> Record:
    return Record(TOPIC, partition, offset, None, b"{}", [])


@dataclass
class ScriptedHandler:
    """Fails every attempt holding a record in ``failing`` (and what follows it in its partition)."""

    failing: set[tuple[int, int]] = field(default_factory=set)
    attempts: list[list[tuple[int, int]]] = field(default_factory=list)
    given_up: list[tuple[list[tuple[int, int]], int]] = field(default_factory=list)
    gate: asyncio.Event | None = None  # when set, attempts wait for it

    async def attempt(self, records: Sequence[Record]) -> Unfinished | None:
        self.attempts.append([(r.partition, r.offset) for r in records])
        if self.gate is not None:
            await self.gate.wait()
        held: set[int] = set()
        left = []
        for r in records:
            if r.partition in held or (r.partition, r.offset) in self.failing:
                held.add(r.partition)
                left.append(r)
        return Unfinished(tuple(left), StoreUnavailable("down")) if left else None

    async def give_up(self, unfinished: Unfinished, attempts: int) -> Unfinished | None:
        self.given_up.append(([(r.partition, r.offset) for r in unfinished.records], attempts))
        return None


@dataclass
class Consumer:
    acked: list[tuple[int, int]] = field(default_factory=list)
    released: list[tuple[int, int]] = field(default_factory=list)

    def deliveries(self, *origins: tuple[int, int]) -> list[Delivery]:
        return [self._delivery(partition, offset) for partition, offset in origins]

    def _delivery(self, partition: int, offset: int) -> Delivery:
        async def ack() -> None:
            self.acked.append((partition, offset))

        def release() -> None:
            self.released.append((partition, offset))

        return Delivery(record(partition, offset), ack, release)

    def acked_in(self, partition: int) -> list[int]:
        return [offset for p, offset in self.acked if p == partition]


async def test_a_batch_that_succeeds_is_acknowledged_whole_in_one_attempt() -> None:
    handler, consumer = ScriptedHandler(), Consumer()
    lanes = PartitionLanes(handler, DELAYS, batch_size=100)

    await lanes.submit(consumer.deliveries((0, 1), (1, 1), (0, 2)))

    assert handler.attempts == [[(0, 1), (1, 1), (0, 2)]]
    assert sorted(consumer.acked) == [(0, 1), (0, 2), (1, 1)]
    assert lanes.lanes == frozenset()


async def test_a_failing_record_holds_back_its_partition_only_and_rejoins_when_it_succeeds() -> None:
    handler, consumer = ScriptedHandler(failing={(0, 2)}), Consumer()
    lanes = PartitionLanes(handler, DELAYS, batch_size=100)

    await lanes.submit(consumer.deliveries((0, 1), (1, 1), (0, 2), (0, 3), (1, 2)))

    assert consumer.acked_in(1) == [1, 2]
    assert consumer.acked_in(0) == [1]  # before the failing record: done, acknowledged
    assert lanes.lanes == {(TOPIC, 0)}
    handler.failing.clear()
    await lanes.wait_idle()
    assert consumer.acked_in(0) == [1, 2, 3]
    assert handler.attempts[1] == [(0, 2), (0, 3)]  # the retry is the lane's partition alone
    assert lanes.lanes == frozenset()


async def test_records_arriving_for_a_partition_in_a_lane_wait_behind_it_in_order() -> None:
    handler, consumer = ScriptedHandler(failing={(0, 1)}), Consumer()
    lanes = PartitionLanes(handler, (0.05,) * 5, batch_size=100)
    await lanes.submit(consumer.deliveries((0, 1), (1, 1)))

    await lanes.submit(consumer.deliveries((0, 2), (1, 2), (0, 3)))

    assert handler.attempts[-1] == [(1, 2)], "the other partition went on without the lane's records"
    assert consumer.acked_in(1) == [1, 2]
    assert consumer.acked_in(0) == []
    handler.failing.clear()
    await lanes.wait_idle()
    assert consumer.acked_in(0) == [1, 2, 3]
    assert [(0, 2), (0, 3)] in handler.attempts  # the backlog, after the lane's own records


async def test_after_the_last_retry_the_records_are_given_up_with_six_attempts_and_acknowledged() -> None:
    handler, consumer = ScriptedHandler(failing={(3, 7)}), Consumer()
    lanes = PartitionLanes(handler, DELAYS, batch_size=100)

    await lanes.submit(consumer.deliveries((3, 7), (3, 8)))
    await lanes.wait_idle()

    assert handler.given_up == [([(3, 7), (3, 8)], 6)]
    assert len(handler.attempts) == 6
    assert consumer.acked_in(3) == [7, 8]


async def test_halting_abandons_a_lane_without_acknowledging_and_releases_its_records() -> None:
    handler, consumer = ScriptedHandler(failing={(0, 1)}), Consumer()
    lanes = PartitionLanes(handler, (30.0,) * 5, batch_size=100)
    await lanes.submit(consumer.deliveries((0, 1), (0, 2)))
    await lanes.submit(consumer.deliveries((0, 3)))

    lanes.halt()
    await asyncio.sleep(0)

    assert consumer.acked == []
    assert sorted(consumer.released) == [(0, 1), (0, 2), (0, 3)]
    assert lanes.lanes == frozenset()
    assert handler.given_up == []


async def test_faust_suspending_its_flow_halts_the_lanes_and_resuming_does_not() -> None:
    accepting = True
    handler, consumer = ScriptedHandler(failing={(0, 1)}), Consumer()
    lanes = PartitionLanes(handler, (30.0,) * 5, batch_size=100, accepting=lambda: accepting)
    await lanes.submit(consumer.deliveries((0, 1)))

    lanes.clear()  # the resume path: still accepting
    assert lanes.lanes == {(TOPIC, 0)}
    accepting = False
    lanes.clear()  # the suspend path (rebalance, shutdown)
    assert lanes.lanes == frozenset()
    assert consumer.released == [(0, 1)]


async def test_while_the_flow_is_suspended_a_batch_is_released_not_processed() -> None:
    handler, consumer = ScriptedHandler(), Consumer()
    lanes = PartitionLanes(handler, DELAYS, batch_size=100, accepting=lambda: False)

    await lanes.submit(consumer.deliveries((0, 1), (1, 1)))

    assert handler.attempts == []
    assert consumer.acked == []
    assert consumer.released == [(0, 1), (1, 1)]


async def test_a_batch_that_fails_while_the_flow_is_being_suspended_opens_no_lane() -> None:
    accepting = True
    gate = asyncio.Event()
    handler, consumer = ScriptedHandler(failing={(0, 1)}, gate=gate), Consumer()
    lanes = PartitionLanes(handler, DELAYS, batch_size=100, accepting=lambda: accepting)
    submitted = asyncio.create_task(lanes.submit(consumer.deliveries((0, 1), (1, 1))))
    await asyncio.sleep(0)

    accepting = False  # a rebalance starts while the attempt runs
    gate.set()
    await submitted

    assert lanes.lanes == frozenset()
    assert consumer.acked == [(1, 1)]  # finished before the rebalance: acknowledged
    assert consumer.released == [(0, 1)]


async def test_a_large_backlog_is_worked_off_in_batches_of_batch_size() -> None:
    handler, consumer = ScriptedHandler(failing={(0, 0)}), Consumer()
    lanes = PartitionLanes(handler, (0.05,) * 5, batch_size=3)
    await lanes.submit(consumer.deliveries((0, 0)))
    await lanes.submit(consumer.deliveries(*[(0, offset) for offset in range(1, 8)]))

    handler.failing.clear()
    await lanes.wait_idle()

    assert consumer.acked_in(0) == list(range(8))
    assert handler.attempts[-3:] == [[(0, 1), (0, 2), (0, 3)], [(0, 4), (0, 5), (0, 6)], [(0, 7)]]


async def test_a_lane_whose_handler_raises_stalls_its_partition_until_halted_and_never_acknowledges() -> None:
    handler, consumer = ScriptedHandler(failing={(0, 1)}), Consumer()
    lanes = PartitionLanes(handler, DELAYS, batch_size=100)
    await lanes.submit(consumer.deliveries((0, 1)))

    async def broken(records: Sequence[Record]) -> Unfinished | None:
        raise RuntimeError("a bug")

    handler.attempt = broken  # type: ignore[method-assign]
    await lanes.wait_idle()
    await lanes.submit(consumer.deliveries((0, 2)))

    assert consumer.acked == [] and consumer.released == []
    assert lanes.lanes == {(TOPIC, 0)}
    lanes.halt()
    assert consumer.released == [(0, 1), (0, 2)]
