"""The processed-eventId table survives a kill -9 (issue 12): the worker that takes over the
partitions recovers their entries from the changelog, and skips redeliveries without a
transaction. Runs before the session worker joins the group (``test_00_*``)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from acme_customer.adapters.consumer_lag import GroupOffsets
from tests.e2e.conftest import Stack, Worker, as_record, http_text, sample, user_registered, wait_for

pytestmark = pytest.mark.e2e
CHANGELOG = "customer-service-processed-event-ids-changelog"
USER_EVENTS = "identity.user.events"
GROUP = "customer-service"  # the worker's Faust app id
BACKLOG = 3000


def _changelog_config(bootstrap: str) -> dict[str, str]:
    async def describe() -> dict[str, str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            (response,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, CHANGELOG)])
            (_error, _message, _type, _name, entries) = response.resources[0]
            return {entry[0]: entry[1] for entry in entries}
        finally:
            await admin.close()

    return asyncio.run(describe())


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        if worker.process is not None and worker.process.poll() is None:
            worker.stop(timeout=30)


def test_after_a_kill_the_next_worker_skips_redeliveries_from_the_recovered_table_without_a_transaction(
    stack: Stack, workers: list[Worker], tmp_path: Path
) -> None:
    env = {**stack.env, "PROCESSED_CACHE": "table", "BROKER_SESSION_TIMEOUT": "10", "BROKER_HEARTBEAT_INTERVAL": "1"}
    first = Worker(env=env, log_path=tmp_path / "first.log").start()
    workers.append(first)
    first.wait_ready(timeout=120)
    events = [user_registered() for _ in range(1000)]
    records = [as_record(event) for event in events]
    before = sum(stack.end_offsets(CHANGELOG).values()) if CHANGELOG in _topics(stack) else 0
    stack.produce(records)
    ids = [event["eventId"] for event in events]
    wait_for(
        lambda: (
            stack.sql("SELECT COUNT(*) FROM processed_events WHERE event_id = ANY(%s::uuid[])", (ids,))[0][0] == 1000
        ),
        60,
        "the 1,000 events processed",
        0.25,
    )
    # the entries reach the changelog shortly after (Faust's producer buffer)
    wait_for(lambda: sum(stack.end_offsets(CHANGELOG).values()) - before >= 1000, 30, "1,000 changelog entries", 0.25)
    assert first.process is not None
    first.process.kill()
    first.process.wait(timeout=10)

    second = Worker(env=env, log_path=tmp_path / "second.log").start()
    workers.append(second)
    second.wait_ready(timeout=120)
    metrics = http_text(f"{second.url}/metrics")
    assert sample(metrics, "processed_cache_entries") >= 1000
    assert sample(metrics, "processed_cache_recovery_seconds_count") >= 1
    stack.produce(records)  # the same 1,000, delivered again

    def duplicates() -> float:
        return sample(http_text(f"{second.url}/metrics"), 'customer_created_total{status="duplicate"}')

    wait_for(lambda: duplicates() >= 1000, 60, "the 1,000 redeliveries counted as duplicates", 0.25)
    metrics = http_text(f"{second.url}/metrics")
    # skipped from the table: not one PostgreSQL transaction in this worker
    assert sample(metrics, 'processing_attempts_total{agent="register_customer",outcome="ok"}') == 0
    assert sample(metrics, 'customer_created_total{status="created"}') == 0
    rows = stack.sql(
        "SELECT COUNT(*), COUNT(DISTINCT user_id) FROM customers WHERE user_id = ANY(%s::uuid[])",
        ([event["payload"]["userId"] for event in events],),
    )
    assert rows == [(1000, 1000)]
    config = _changelog_config(stack.bootstrap)
    assert (config["cleanup.policy"], config["retention.ms"]) == ("compact,delete", str(7 * 86400 * 1000))


def test_a_worker_that_recovers_the_table_on_a_backlog_processes_and_commits_all_of_it(
    stack: Stack, workers: list[Worker], tmp_path: Path
) -> None:
    """The table's recovery resumes Faust's consumer flow to read the changelog; faust-streaming 0.15.3
    then resumes the input partitions and seeks them with the flow still on, and its flow-control
    resume clears the stream queues: records fetched in that window were lost to the pipeline and,
    never acknowledged, held each partition's committed offset back for good (docs/reliability.md).
    Runs after the test above, whose entries make the changelog non-empty (a recovery to do)."""
    assert sum(stack.end_offsets(CHANGELOG).values()) > 0, "the changelog must hold entries: a recovery to do"
    events = [user_registered() for _ in range(BACKLOG)]
    stack.produce([as_record(event) for event in events])  # a backlog waiting before any worker runs
    env = {**stack.env, "PROCESSED_CACHE": "table"}
    worker = Worker(env=env, log_path=tmp_path / "backlog.log").start()
    workers.append(worker)
    worker.wait_ready(timeout=120)
    ids = [event["eventId"] for event in events]

    def processed() -> int:
        return int(stack.sql("SELECT COUNT(*) FROM processed_events WHERE event_id = ANY(%s::uuid[])", (ids,))[0][0])

    wait_for(lambda: processed() == BACKLOG, 90, f"the {BACKLOG:,} backlog events processed", 0.25)
    ends = stack.end_offsets(USER_EVENTS)
    wait_for(
        lambda: _committed(stack, USER_EVENTS, ends) == ends, 30, "the group's committed offsets at the log's end", 0.25
    )


def _committed(stack: Stack, topic: str, of: dict[int, int]) -> dict[int, int | None]:
    partitions = [(topic, partition) for partition in of]

    async def read() -> dict[int, int | None]:
        offsets = GroupOffsets(stack.bootstrap, GROUP)
        try:
            found = await offsets.committed(partitions)
        finally:
            await offsets.close()
        return {partition: offset for (_topic, partition), offset in found.items()}

    return asyncio.run(read())


def _topics(stack: Stack) -> list[str]:
    async def names() -> list[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
        await admin.start()
        try:
            return list(await admin.list_topics())
        finally:
            await admin.close()

    return asyncio.run(names())
