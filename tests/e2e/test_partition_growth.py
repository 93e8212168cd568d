"""Scale by partition count: identity.user.events and customer.events grown under a running worker.

On a Kafka broker of this module's own (the devstack's Kafka, started in a temporary folder),
because partitions cannot be taken away again and the shared broker's topics must keep their 12.
``acme-customer topics ensure --partitions 18`` grows both topics; the worker, without a restart,
consumes the new partitions within 30 s (its metadata refresh, then the group's rebalance),
``/ready`` and ``consumer_lag_records`` show them, and every invariant holds over what went in.
A shrink is refused with one line, and nothing changes.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from acme_customer.adapters.topics import ensure_topics, topic_partitions
from acme_customer.devstack.stack import Stack as DevStack
from tests.e2e.conftest import (
    REPO,
    Stack,
    Worker,
    as_record,
    databases_of_its_own,
    http_json,
    http_text,
    user_registered,
    wait_for,
)

pytestmark = pytest.mark.e2e

USER_EVENTS = "identity.user.events"
CUSTOMER_EVENTS = "customer.events"
PICKUP_BOUND_S = 30.0  # docs/operations.md, "Scale by partition count"
CLI = str(Path(sys.executable).parent / "acme-customer")
SHARED_DEVSTACK = Path(os.environ.get("DEVSTACK_DIR", REPO / ".devstack"))


@pytest.fixture(scope="module")
def own_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("growth-devstack")
    (root / "kafka" / "libs").mkdir(parents=True)
    for version in (SHARED_DEVSTACK / "kafka" / "libs").iterdir():  # the jars the shared stack resolved
        (root / "kafka" / "libs" / version.name).symlink_to(version)
    broker = DevStack(root, REPO, names=["kafka"])
    broker.up(report=lambda _: None)
    try:
        yield broker.env_values()["KAFKA_BOOTSTRAP_SERVERS"]
    finally:
        broker.down(report=lambda _: None)


@pytest.fixture(scope="module")
def grown(stack: Stack, own_kafka: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    with databases_of_its_own(stack, "customer_growth", KAFKA_BOOTSTRAP_SERVERS=own_kafka, EVENT_FORMAT="json") as env:
        asyncio.run(ensure_topics(own_kafka))
        worker = Worker(env=env, log_path=tmp_path_factory.mktemp("growth-logs") / "worker.log").start()
        try:
            yield _grow_under(
                worker, Stack(env=env, database_url=env["DATABASE_URL"], mongo_database=env["MONGODB_DATABASE"])
            )
        finally:
            worker.stop()


def _grow_under(worker: Worker, growth: Stack) -> dict[str, object]:
    """24 customers on 12 partitions, the topics grown to 18, then 12 more on the new partitions."""
    worker.wait_ready()
    before = [user_registered(first_name="Before") for _ in range(24)]
    _produce(growth.bootstrap, before)
    wait_for(lambda: _customers(growth) == 24, 60, "the customers produced before the growth")

    command = subprocess.run(
        [CLI, "topics", "ensure", "--partitions", "18"], env=growth.env, capture_output=True, text=True, timeout=60
    )
    grown_at = time.monotonic()
    after = [user_registered(first_name="After") for _ in range(12)]
    _produce(growth.bootstrap, after, partitions=range(12, 18))  # two on each new partition
    wait_for(lambda: _customers(growth) == 36, PICKUP_BOUND_S, "the records on the new partitions to become customers")
    print(f"new partitions consumed {time.monotonic() - grown_at:.1f} s after the growth")
    return {"command": command, "worker": worker, "stack": growth, "events": before + after, "kafka": growth.bootstrap}


def _produce(bootstrap: str, events: list[dict[str, object]], partitions: range | None = None) -> None:
    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            for index, event in enumerate(events):
                key, value = as_record(event)
                partition = partitions[index % len(partitions)] if partitions is not None else None
                await producer.send_and_wait(USER_EVENTS, value, key=key, partition=partition)
        finally:
            await producer.stop()

    asyncio.run(send())


def _customers(stack: Stack) -> int:
    return int(stack.sql("SELECT COUNT(*) FROM customers")[0][0])


def test_topics_ensure_grows_the_input_and_output_topics_together(grown: dict[str, object]) -> None:
    command = grown["command"]
    assert isinstance(command, subprocess.CompletedProcess) and command.returncode == 0, command
    assert "topics grown to 18 partitions: customer.events, identity.user.events" in command.stdout
    bootstrap = str(grown["kafka"])
    for topic in (USER_EVENTS, CUSTOMER_EVENTS):
        assert len(asyncio.run(topic_partitions(bootstrap, topic))) == 18


def test_the_worker_holds_and_reports_the_new_partitions_without_a_restart(grown: dict[str, object]) -> None:
    worker = grown["worker"]
    assert isinstance(worker, Worker)
    status, ready = http_json(f"{worker.url}/ready")
    assert status == 200 and ready["partitions"][USER_EVENTS] == list(range(18)), ready

    def lag_of_a_new_partition() -> bool:
        return f'consumer_lag_records{{partition="17",topic="{USER_EVENTS}"}}' in http_text(f"{worker.url}/metrics")

    wait_for(lag_of_a_new_partition, 20, "consumer_lag_records for partition 17", interval=0.5)


def test_every_invariant_holds_over_the_records_before_and_after_the_growth(grown: dict[str, object]) -> None:
    stack = grown["stack"]
    assert isinstance(stack, Stack)
    events = grown["events"]
    assert isinstance(events, list)
    user_ids = sorted(str(event["payload"]["userId"]) for event in events)  # type: ignore[index]
    assert sorted(row[0] for row in stack.sql("SELECT user_id::text FROM customers")) == user_ids
    numbers = sorted(int(row[0][-6:]) for row in stack.sql("SELECT customer_number FROM customers"))
    assert numbers == list(range(1, len(events) + 1)), "customer numbers are not 1..n"
    assert stack.sql("SELECT COUNT(*) FROM event_store")[0][0] == len(events)
    wait_for(lambda: stack.mongo().count_documents({}) == len(events), 60, "every document in the read model")


def test_a_shrink_is_refused_with_one_line_and_changes_nothing(grown: dict[str, object]) -> None:
    stack = grown["stack"]
    assert isinstance(stack, Stack)
    refused = subprocess.run(
        [CLI, "topics", "ensure", "--partitions", "12"], env=stack.env, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode != 0
    (line,) = refused.stderr.strip().splitlines()
    assert "cannot shrink to 12 partitions" in line and "identity.user.events has 18" in line
    assert len(asyncio.run(topic_partitions(str(grown["kafka"]), USER_EVENTS))) == 18
