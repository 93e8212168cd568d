"""Operating the worker as the design card says (issue 11): several workers on one host, Faust's own
monitoring beside the story's metrics, consumer lag that rises while a partition is stuck, and the
exact counter values after a known input.

Named ``test_00_*`` so that it runs before the session's shared worker joins the group: each test
here owns every member of the customer-service group while it runs.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from tests.e2e.conftest import Stack, Worker, as_record, http_json, http_text, user_registered, wait_for

pytestmark = pytest.mark.e2e
USER_EVENTS = "identity.user.events"


def _produce(stack: Stack, records: list[tuple[bytes, bytes]], partition: int | None = None) -> None:
    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all")
        await producer.start()
        try:
            for key, value in records:
                await producer.send(USER_EVENTS, value, key=key, partition=partition)
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(send())


def _customers_of(stack: Stack, events: list[dict[str, Any]]) -> dict[str, int]:
    """Customers per userId of ``events`` (a user with two customers would show 2)."""
    rows = stack.sql(
        "SELECT user_id::text, COUNT(*) FROM customers WHERE user_id = ANY(%s::uuid[]) GROUP BY user_id",
        ([event["payload"]["userId"] for event in events],),
    )
    return {user: int(count) for user, count in rows}


def _sample(text: str, name: str, **labels: str) -> float:
    """One sample of the Prometheus text ``text`` (0 when the series is absent)."""
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        found = re.fullmatch(rf"{re.escape(name)}(?:\{{(.*)\}})?", series)
        if found and ",".join(sorted((found.group(1) or "").split(","))) == ",".join(sorted(wanted.split(","))):
            return float(value)
    return 0.0


@pytest.fixture
def workers(stack: Stack, tmp_path: Path) -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        if worker.process is not None and worker.process.poll() is None:
            worker.stop(timeout=30)


def _start(workers: list[Worker], env: dict[str, str], log: Path) -> Worker:
    """A worker on a web port of its own, stopped by the ``workers`` fixture."""
    worker = Worker(env=env, log_path=log).start()
    workers.append(worker)
    return worker


def _actives(worker: Worker) -> set[int]:
    """The identity.user.events partitions the worker holds, from its /ready view."""
    status, body = http_json(f"{worker.url}/ready")
    return set(body.get("partitions", {}).get(USER_EVENTS, [])) if status == 200 else set()


# -- several workers per host --------------------------------------------------------------------


def test_three_workers_started_together_on_one_host_split_the_partitions_and_create_each_customer_once(
    stack: Stack, workers: list[Worker], tmp_path: Path
) -> None:
    # one environment; each worker its own web port (Worker sets WEB_PORT), all started at once
    trio = [_start(workers, stack.env, tmp_path / f"worker-{n}.log") for n in range(3)]
    for worker in trio:
        worker.wait_ready(timeout=120)

    def split() -> list[set[int]] | None:
        held = [_actives(worker) for worker in trio]
        together = set().union(*held)
        disjoint = sum(len(h) for h in held) == len(together)
        return held if together == set(range(12)) and disjoint and all(held) else None

    held = wait_for(split, 60, "the 12 partitions split over the three workers", 0.5)
    for worker in trio:
        status, body = http_json(f"{worker.url}/ready")
        assert status == 200 and body["status"] == "UP", body

    events = [user_registered() for _ in range(60)]
    _produce(stack, [as_record(event) for event in events] + [as_record(event) for event in events[:10]])

    def all_created() -> dict[str, int] | None:
        found = _customers_of(stack, events)
        return found if len(found) == len(events) else None

    customers = wait_for(all_created, 60, "a customer for every user", 0.25)
    assert set(customers.values()) == {1}, "a user got more than one customer"
    assert sorted(len(h) for h in held) == [4, 4, 4]


def test_a_worker_whose_web_port_is_taken_says_so_in_one_line_and_exits_2(
    stack: Stack, workers: list[Worker], tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        log = tmp_path / "second.log"
        # as a second worker started with the first one's WEB_PORT
        second = Worker(env=stack.env, log_path=log, port=port).start()
        workers.append(second)
        assert second.process is not None
        assert second.process.wait(timeout=90) == 2
    text = log.read_text()
    # one line (Faust's worker routes stderr through its log, so it carries the log's prefix)
    lines = [line for line in text.splitlines() if "acme-customer: cannot start" in line]
    assert len(lines) == 1, lines
    assert lines[0].endswith(
        f"acme-customer: cannot start: web port {port} on 127.0.0.1 is in use (another worker on this host?);"
        " give each worker its own WEB_PORT or `faust worker --web-port N`"
    )
    assert "Traceback" not in text


# -- Faust's monitoring, lag, metric accounting ----------------------------------------------------


def test_one_metrics_view_serves_the_storys_metrics_faust_s_monitor_and_the_lag_and_faust_s_views_answer(
    stack: Stack, workers: list[Worker], tmp_path: Path
) -> None:
    worker = _start(workers, stack.env, tmp_path / "worker.log")
    worker.wait_ready(timeout=120)
    event = user_registered()
    stack.produce([as_record(event)])
    wait_for(lambda: _customers_of(stack, [event]), 30, "the customer")

    def scraped() -> str | None:
        text = http_text(f"{worker.url}/metrics")
        return text if "consumer_lag_records{" in text else None

    text = wait_for(scraped, 30, "consumer_lag_records in /metrics", 0.5)
    assert _sample(text, "customer_created_total", status="created") >= 1  # the story's
    assert _sample(text, "customer_service_messages_received_total") >= 1  # Faust's PrometheusMonitor
    lags = re.findall(r'^consumer_lag_records\{partition="(\d+)",topic="([^"]+)"\}', text, re.MULTILINE)
    assert {(topic, int(p)) for p, topic in lags} == {
        (t, p) for t in (USER_EVENTS, "customer.events") for p in range(12)
    }

    status, stats = http_json(f"{worker.url}/")
    assert status == 200 and any("messages_received_total" in sensor for sensor in stats.values()), stats
    assert _actives(worker) == set(range(12))
    status, assignment = http_json(f"{worker.url}/assignment/")  # Faust's: only tables' topics, none here
    assert status == 200 and set(assignment) == {"actives", "standbys"}, assignment
    status, performance = http_json(f"{worker.url}/performance/")
    assert status == 200 and performance, performance


def test_consumer_lag_keeps_rising_while_a_partition_is_stuck_and_falls_when_it_moves(
    stack: Stack, workers: list[Worker], tmp_path: Path
) -> None:
    stuck, partition = user_registered(), 7
    trigger = tmp_path / "failing"
    trigger.touch()
    env = {
        **stack.env,
        "RETRY_BACKOFF_SECONDS": "5,5,5,5,5",  # stuck for 25 s unless the trigger goes
        "ACME_FAULT_POINT": "create",
        "ACME_FAULT_KEY": stuck["payload"]["userId"],
        "ACME_FAULT_TRIGGER": str(trigger),
    }
    worker = _start(workers, env, tmp_path / "worker.log")
    worker.wait_ready(timeout=120)

    def lag() -> float:
        return _sample(http_text(f"{worker.url}/metrics"), "consumer_lag_records", topic=USER_EVENTS, partition="7")

    _produce(stack, [as_record(stuck)] + [as_record(user_registered()) for _ in range(4)], partition)

    def lag_of_5() -> float | None:
        value = lag()
        return value if value >= 5 else None

    first = wait_for(lag_of_5, 20, "a lag of 5 on the stuck partition", 0.5)
    _produce(stack, [as_record(user_registered()) for _ in range(5)], partition)
    wait_for(lambda: lag() >= first + 5, 20, "the lag to rise with the new records", 0.5)

    trigger.unlink()
    wait_for(lambda: lag() == 0, 30, "the lag to fall to 0 once the partition moves", 0.5)
    assert _customers_of(stack, [stuck]) == {stuck["payload"]["userId"]: 1}


def test_after_a_known_input_the_counters_hold_exactly_what_happened(
    stack: Stack, workers: list[Worker], tmp_path: Path
) -> None:
    """100 registrations, 3 redeliveries, 2 invalid records, 1 other event type, 1 record whose retries
    run out: each counter moves by exactly that much (the worker is the group's only member)."""
    doomed = user_registered()
    trigger = tmp_path / "failing"
    trigger.touch()
    env = {
        **stack.env,
        "ACME_FAULT_POINT": "create",
        "ACME_FAULT_KEY": doomed["payload"]["userId"],
        "ACME_FAULT_TRIGGER": str(trigger),
    }
    worker = _start(workers, env, tmp_path / "worker.log")
    worker.wait_ready(timeout=120)
    before = http_text(f"{worker.url}/metrics")

    fresh = [user_registered() for _ in range(100)]
    other = {**user_registered(), "eventType": "UserEmailChanged"}
    invalid = [(b"bad-1", b"not json"), (b"bad-2", json.dumps({**user_registered(), "eventId": "x"}).encode())]
    records = [as_record(e) for e in fresh] + [as_record(e) for e in fresh[:3]] + invalid
    records += [as_record(other), as_record(doomed)]
    stack.produce(records)
    wait_for(lambda: len(_customers_of(stack, fresh)) == 100, 60, "the 100 customers", 0.25)

    def moved(name: str, **labels: str) -> float:
        return _sample(http_text(f"{worker.url}/metrics"), name, **labels) - _sample(before, name, **labels)

    # the doomed record goes to the DLQ after 6 attempts (0.1 .. 1.6 s apart)
    wait_for(lambda: moved("customer_created_total", status="failed") >= 1, 30, "the doomed record to be failed")
    assert moved("customer_created_total", status="created") == 100
    assert moved("customer_created_total", status="duplicate") == 3
    assert moved("customer_created_total", status="rejected") == 2
    assert moved("customer_created_total", status="failed") == 1
    assert moved("identity_events_ignored_total", event_type="UserEmailChanged") == 1
    assert moved("events_dead_lettered_total", error_class="InvalidEvent") == 2
    assert moved("events_dead_lettered_total", error_class="StoreUnavailable") == 1
    assert moved("processing_attempts_total", agent="register_customer", outcome="exhausted") == 1
    assert _customers_of(stack, [doomed]) == {}
    uuid.UUID(doomed["eventId"])  # the doomed record was a valid UserRegistered
