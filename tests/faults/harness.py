"""Fault-injection harness: a scenario of deliveries, workers to start, kill and restart, components
to stop and crash, and the final check of every DESIGN.md invariant over the resulting state.

A ``Run`` owns one fresh PostgreSQL database and one fresh MongoDB database (see conftest.py), the
worker processes it started (each with its own log, ``.devstack/logs/faults-<test>-<n>.log``) and a
monitor thread that samples progress, from which the time to recover after each fault is read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pymongo import MongoClient
from schema_registry.client import AsyncSchemaRegistryClient

from acme_customer.adapters.codec import TopicCodec
from acme_customer.adapters.schemas import CUSTOMER_REGISTERED
from tests.e2e.conftest import REPO, Stack, Worker, as_record, user_registered

USER_EVENTS = "identity.user.events"
CUSTOMER_EVENTS = "customer.events"
DLQ = "identity.user.events.dlq"
MONTHS = ("2026-05-15T12:00:00Z", "2026-06-01T00:00:00Z")
DEVSTACK = Path(os.environ.get("DEVSTACK_DIR", REPO / ".devstack"))
LOG_DIR = DEVSTACK / "logs"
# not tracked: a test run leaves the work tree clean; copy rows worth keeping into docs/ by hand
RESULTS = REPO / "test-results" / "reliability-results.md"
CLI = str(Path(sys.executable).parent / "acme-customer")

# Configuration only (faust reads these from the environment): a killed or frozen member leaves the
# group after 10 s instead of faust's default 60 s, so a restarted worker gets its partitions back soon.
WORKER_ENV = {"BROKER_SESSION_TIMEOUT": "10", "BROKER_HEARTBEAT_INTERVAL": "1"}
SESSION_TIMEOUT_S = 10.0
FAST_BACKOFF = "0.1,0.2,0.4,0.8,1.6"
DEFAULT_BACKOFF = "1,2,4,8,16"

RESULTS_HEADER = """# Fault-injection results

Rows are appended by `tests/faults` (one per test run); reproduce with

    cd /work/main && set -a && . .devstack/env && set +a && \\
        .venv/bin/pytest tests/faults -q -p no:cacheprovider -x -s

Columns:
- **events in**: deliveries produced to `identity.user.events` (valid + invalid, redeliveries and
  second registrations included); **valid users**: distinct userIds among the valid deliveries.
- **customers out**: customers in PostgreSQL for those users (must equal valid users).
- **dup on topic**: `CustomerRegistered` records on `customer.events` beyond one per stored event
  (allowed: consumers are idempotent; reported to watch the redelivery path).
- **DLQ**: records of this run on `identity.user.events.dlq` (must equal the invalid deliveries);
  **valid in DLQ**: valid deliveries that were dead-lettered (should be 0).
- **recovery s**: the longest time from the end of a fault (worker restarted, component started)
  to the first progress on what the fault blocked (new processed events, or new read-model
  documents), or to the complete state if nothing was left to do.
- **wall s**: the test's wall time; **result**: PASS, or the first failed invariant.

| date (UTC) | test | events in | valid users | invalid | customers out | dup on topic | DLQ |\
 valid in DLQ | recovery s | wall s | result |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
"""


# -- the scenario ------------------------------------------------------------------------------


def invalid_value(kind: int, key: str) -> bytes:
    """A record the service must reject (each kind a different validation failure)."""
    if kind == 0:
        return b"\xff\xfe not json " + key.encode()
    event = user_registered()
    if kind == 1:
        del event["payload"]
    elif kind == 2:
        event["payload"]["userId"] = "not-a-uuid-" + key
    else:
        event["eventId"] = "not-a-uuid-" + key
    return json.dumps(event).encode()


@dataclass
class Scenario:
    """N deliveries: distinct users, redeliveries, second registrations, a few invalid records; shuffled."""

    seed: int
    deliveries: int = 5000
    users: int = 3500
    invalid_share: float = 0.03
    records: list[tuple[bytes, bytes]] = field(default_factory=list)
    valid_events: dict[str, dict[str, Any]] = field(default_factory=dict)  # eventId -> event
    by_user: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    invalid_keys: set[bytes] = field(default_factory=set)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        run = uuid.UUID(int=rng.getrandbits(128)).hex[:10]
        invalid = max(3, int(self.deliveries * self.invalid_share))
        out: list[tuple[bytes, bytes]] = []
        for index in range(self.users):
            event = user_registered(registered_at=MONTHS[index % 2], marketing_opt_in=index % 3 == 0)
            self._add(event)
            out.append(as_record(event))
        users = list(self.by_user)
        for index in range(invalid):
            key = f"bad-{run}-{index}"
            self.invalid_keys.add(key.encode())
            out.append((key.encode(), invalid_value(index % 4, key)))
        while len(out) < self.deliveries:
            user_id = rng.choice(users)
            if rng.random() < 0.7:
                out.append(as_record(rng.choice(self.by_user[user_id])))  # the same event again
            else:  # the identity service registered the same user again (another eventId)
                again = user_registered(user_id=user_id, registered_at=MONTHS[rng.randrange(2)])
                self._add(again)
                out.append(as_record(again))
        rng.shuffle(out)
        self.records = out

    def _add(self, event: dict[str, Any]) -> None:
        self.valid_events[event["eventId"]] = event
        self.by_user[event["payload"]["userId"]].append(event)

    def chunks(self, count: int) -> list[list[tuple[bytes, bytes]]]:
        size = -(-len(self.records) // count)
        return [self.records[i : i + size] for i in range(0, len(self.records), size)]


# -- Kafka helpers -----------------------------------------------------------------------------


def produce(bootstrap: str, records: list[tuple[bytes, bytes]], partition: int | None = None) -> None:
    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        await producer.start()
        try:
            futures = [await producer.send(USER_EVENTS, value, key=key, partition=partition) for key, value in records]
            await producer.flush()
            for future in futures:
                await future
        finally:
            await producer.stop()

    asyncio.run(send())


def read_topic(
    stack: Stack,
    topic: str,
    since: dict[int, int],
    until: Callable[[list[Any]], bool],
    timeout: float,
    decode: bool = False,
) -> list[Any]:
    """Records (or (record, decoded value) pairs) after ``since`` until ``until(found)`` holds or the
    end offsets at the deadline are reached; never raises on the deadline (the caller asserts)."""

    async def read() -> list[Any]:
        codec = None
        if decode:
            codec = TopicCodec(topic, CUSTOMER_REGISTERED, AsyncSchemaRegistryClient(stack.env["SCHEMA_REGISTRY_URL"]))
        consumer = AIOKafkaConsumer(bootstrap_servers=stack.bootstrap, group_id=None, enable_auto_commit=False)
        await consumer.start()
        found: list[Any] = []
        try:
            partitions = [TopicPartition(topic, p) for p in sorted(since)]
            consumer.assign(partitions)
            for tp in partitions:
                consumer.seek(tp, since[tp.partition])
            deadline = time.monotonic() + timeout
            while not until(found) and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=300, max_records=2000)
                for records in batches.values():
                    for record in records:
                        if codec is None:
                            found.append(record)
                        else:
                            try:
                                found.append((record, await codec.decode(record.value)))
                            except Exception:  # another producer's bytes: not ours to judge
                                found.append((record, None))
            return found
        finally:
            await consumer.stop()

    return asyncio.run(read())


def committed_offsets(stack: Stack, topic: str = USER_EVENTS) -> dict[int, int]:
    async def read() -> dict[int, int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=stack.bootstrap, group_id="customer-service")
        await consumer.start()
        try:
            out = {}
            for partition in range(12):
                committed = await consumer.committed(TopicPartition(topic, partition))
                out[partition] = committed or 0
            return out
        finally:
            await consumer.stop()

    return asyncio.run(read())


# -- local stack components --------------------------------------------------------------------


def devstack(action: str, component: str) -> float:
    """``acme-customer devstack stop|start <component>``; returns the time it took."""
    started = time.monotonic()
    result = subprocess.run(
        [CLI, "devstack", action, component], cwd=REPO, capture_output=True, text=True, check=False, timeout=240
    )
    assert result.returncode == 0, f"devstack {action} {component}: {result.stdout}{result.stderr}"
    return time.monotonic() - started


def component_pid(component: str) -> int | None:
    pidfile = DEVSTACK / "pids" / f"{component}.pid"
    return int(pidfile.read_text().split()[0]) if pidfile.exists() else None


def component_running(component: str) -> bool:
    from acme_customer.devstack.stack import Stack as DevStack

    stack = DevStack(DEVSTACK, REPO, names=[component])
    return stack.running(stack.component(component))


def crash_postgres() -> None:
    """SIGQUIT to the postmaster: PostgreSQL's immediate shutdown (a crash: no checkpoint)."""
    pid = component_pid("postgres")
    assert pid is not None, "no postgres pid file"
    os.kill(pid, signal.SIGQUIT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and component_running("postgres"):
        time.sleep(0.1)
    assert not component_running("postgres"), "postgres still running 30 s after SIGQUIT"


def foreign_workers(own: set[int], bootstrap: str | None = None) -> list[str]:
    """Other ``faust -A acme_customer.app`` processes (on the Kafka at ``bootstrap``, when given; another
    local stack's workers are not in our group): they would take this run's partitions."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in own:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "faust" in cmdline and "acme_customer.app" in cmdline and "worker" in cmdline:
            if bootstrap is not None and f"KAFKA_BOOTSTRAP_SERVERS={bootstrap}".encode() not in _environ(entry):
                continue
            found.append(f"{entry.name}: {cmdline.strip()}")
    return found


def _environ(process: Path) -> list[bytes]:
    try:
        return (process / "environ").read_bytes().split(b"\0")
    except OSError:
        return []


# -- progress monitor --------------------------------------------------------------------------


class Monitor(threading.Thread):
    """Samples (time, processed_events count, read-model document count) every ``interval`` seconds."""

    def __init__(self, stack: Stack, interval: float = 0.25):
        super().__init__(daemon=True)
        self.stack = stack
        self.interval = interval
        self.samples: list[tuple[float, int | None, int | None]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        connection: psycopg.Connection[Any] | None = None
        client: MongoClient[dict[str, Any]] = MongoClient(
            self.stack.env["MONGODB_URI"], serverSelectionTimeoutMS=300, connectTimeoutMS=300
        )
        documents = client[self.stack.mongo_database]["customers"]
        while not self.halt.wait(self.interval):
            processed = mongo = None
            try:
                if connection is None or connection.closed:
                    connection = psycopg.connect(self.stack.database_url, autocommit=True, connect_timeout=1)
                row = connection.execute("SELECT COUNT(*) FROM processed_events").fetchone()
                processed = int(row[0]) if row else None
            except psycopg.Error:
                if connection is not None:
                    with contextlib.suppress(Exception):
                        connection.close()
                connection = None
            try:
                mongo = documents.count_documents({})
            except Exception:
                mongo = None
            self.samples.append((time.monotonic(), processed, mongo))
        if connection is not None:
            connection.close()
        client.close()

    def recovery(self, ended_at: float, metric: str, complete_at: float, baseline: int | None = None) -> float:
        """Seconds from ``ended_at`` to the first progress on ``metric`` beyond ``baseline`` (or to completion)."""
        index = 1 if metric == "processed" else 2
        if baseline is None:
            before = [s[index] for s in self.samples if s[0] <= ended_at and s[index] is not None]
            baseline = before[-1] if before else 0
        for sample in self.samples:
            value = sample[index]
            if sample[0] > ended_at and value is not None and value > baseline:
                return min(sample[0], complete_at) - ended_at
        return max(0.0, complete_at - ended_at)


# -- the run -----------------------------------------------------------------------------------


@dataclass
class Report:
    test: str
    events_in: int
    valid_users: int
    invalid: int
    customers_out: int
    duplicates_on_topic: int
    dlq: int
    valid_in_dlq: int
    recovery_s: float | None
    wall_s: float
    failures: list[str]
    notes: list[str]

    def row(self) -> str:
        result = "PASS" if not self.failures else "FAIL: " + self.failures[0].replace("|", "/")[:160]
        recovery = "-" if self.recovery_s is None else f"{self.recovery_s:.1f}"
        when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M")
        return (
            f"| {when} | {self.test} | {self.events_in} | {self.valid_users} | {self.invalid} | {self.customers_out}"
            f" | {self.duplicates_on_topic} | {self.dlq} | {self.valid_in_dlq} | {recovery} | {self.wall_s:.0f}"
            f" | {result} |"
        )

    def __str__(self) -> str:
        recovery = "-" if self.recovery_s is None else f"{self.recovery_s:.1f}s"
        text = (
            f"[{self.test}] events in {self.events_in} (valid users {self.valid_users}, invalid {self.invalid}),"
            f" customers out {self.customers_out}, duplicates on customer.events {self.duplicates_on_topic},"
            f" DLQ {self.dlq} (valid in DLQ {self.valid_in_dlq}), recovery {recovery}, wall {self.wall_s:.0f}s"
        )
        for note in self.notes:
            text += f"\n  note: {note}"
        for failure in self.failures:
            text += f"\n  FAILED: {failure}"
        return text


class Run:
    """One test's run: its stack (fresh databases), scenario, workers, faults and timings."""

    def __init__(self, name: str, stack: Stack):
        self.name = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")
        self.stack = stack
        self.started = time.monotonic()
        self.workers: list[Worker] = []
        self.fault_ends: list[tuple[float, str, int | None]] = []
        self.notes: list[str] = []
        self.failures: list[str] = []  # a test's own checks, reported with the invariants
        self.produced: list[tuple[bytes, bytes]] = []
        self.valid_events: dict[str, dict[str, Any]] = {}
        self.invalid_keys: set[bytes] = set()
        # valid events the test makes fail for good: expected in the DLQ and nowhere else
        self.dead_on_purpose: set[str] = set()
        self.produced_at: list[tuple[float, list[str]]] = []  # (wall time in Kafka, valid eventIds)
        self.monitor = Monitor(stack)
        deadline = time.monotonic() + 180  # another suite's worker: let it finish first
        while (foreign := foreign_workers(set(), stack.bootstrap)) and time.monotonic() < deadline:
            time.sleep(2)
        assert not foreign, "foreign faust workers would take this run's partitions: " + "; ".join(foreign)
        self.since_customer = stack.end_offsets(CUSTOMER_EVENTS)
        self.since_dlq = stack.end_offsets(DLQ)
        committed = committed_offsets(stack)
        lag = {p: end - committed[p] for p, end in stack.end_offsets(USER_EVENTS).items() if end > committed[p]}
        if lag:
            self.notes.append(f"group customer-service had a backlog at start: {sum(lag.values())} record(s)")
        self.monitor.start()

    # -- input --
    def use(self, scenario: Scenario) -> None:
        self.valid_events.update(scenario.valid_events)
        self.invalid_keys |= scenario.invalid_keys

    def produce(self, records: list[tuple[bytes, bytes]], partition: int | None = None) -> None:
        produce(self.stack.bootstrap, records, partition)
        self.produced.extend(records)
        self.produced_at.append((time.time(), [e for e in map(_event_id, records) if e in self.valid_events]))

    def expect(self, condition: bool, message: str) -> None:
        """A test's own check, reported (and failed) with the invariants by check_invariants."""
        if not condition:
            self.failures.append(message)

    def in_flight(self, at: float) -> int:
        """Valid events already in Kafka at wall time ``at`` but first processed at ``at`` or later.

        With ``at`` the moment of a kill: the kill met them unfinished. With ``at`` the end of an
        outage or of a rebalance: they waited for it."""
        ids = list({event_id for produced, ids in self.produced_at if produced <= at for event_id in ids})
        if not ids:
            return 0
        (count,) = self.stack.sql(
            "SELECT COUNT(*) FROM processed_events"
            " WHERE event_id = ANY(%s::uuid[]) AND processed_at >= to_timestamp(%s)",
            (ids, at),
        )[0]
        return int(count)

    def valid_expected(self) -> dict[str, dict[str, Any]]:
        """The valid events that must end processed (all but those dead-lettered on purpose)."""
        return {e: event for e, event in self.valid_events.items() if e not in self.dead_on_purpose}

    # -- workers --
    def worker_env(self, backoff: str = FAST_BACKOFF, **extra: str) -> dict[str, str]:
        env = {**self.stack.env, **WORKER_ENV, "RETRY_BACKOFF_SECONDS": backoff, **extra}
        for name in ("ACME_FAULT_POINT", "ACME_FAULT_TRIGGER", "ACME_FAULT_KEY"):
            if name not in extra:
                env.pop(name, None)
        return env

    def start_worker(self, env: dict[str, str] | None = None, wait: bool = True) -> Worker:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        log = LOG_DIR / f"faults-{self.name}-{len(self.workers) + 1}.log"
        log.unlink(missing_ok=True)
        worker = Worker(env=env or self.worker_env(), log_path=log).start()
        self.workers.append(worker)
        if wait:
            worker.wait_ready(timeout=90)
        return worker

    @staticmethod
    def kill(worker: Worker, sig: int = signal.SIGKILL) -> None:
        assert worker.process is not None
        worker.process.send_signal(sig)
        if sig == signal.SIGKILL:
            worker.process.wait(timeout=10)

    def fault_ended(self, metric: str = "processed", at: float | None = None) -> float:
        """Mark the end of a fault (now, or at ``at``); progress on ``metric`` is measured from the count then."""
        now = time.monotonic() if at is None else at
        baseline: int | None = None
        with contextlib.suppress(Exception):
            if metric == "processed":
                baseline = int(self.stack.sql("SELECT COUNT(*) FROM processed_events")[0][0])
            else:
                baseline = self.stack.mongo().count_documents({})
        self.fault_ends.append((now, metric, baseline))
        return now

    def cleanup(self) -> None:
        """Stop every worker (SIGTERM, 30 s) and the monitor; raise if a worker would not stop."""
        stuck: list[str] = []
        for worker in self.workers:
            process = worker.process
            if process is None or process.poll() is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGCONT)
            try:
                worker.stop(timeout=30)
            except AssertionError as error:
                stuck.append(f"{error} (log {worker.log_path})")
        self.monitor.halt.set()
        self.monitor.join(timeout=5)
        assert not stuck, "a worker would not stop: " + "; ".join(stuck)

    def alive_workers(self) -> list[Worker]:
        return [w for w in self.workers if w.process is not None and w.process.poll() is None]

    # -- completion --
    def counts(self) -> tuple[int, int, int]:
        """(processed valid eventIds, customers, read-model documents)."""
        ids = list(self.valid_expected())
        (processed,) = self.stack.sql("SELECT COUNT(*) FROM processed_events WHERE event_id = ANY(%s::uuid[])", (ids,))[
            0
        ]
        (customers,) = self.stack.sql("SELECT COUNT(*) FROM customers")[0]
        documents = self.stack.mongo().count_documents({})
        return int(processed), int(customers), int(documents)

    def complete(self) -> bool:
        try:
            processed, customers, documents = self.counts()
        except Exception:
            return False
        return processed == len(self.valid_expected()) and customers == documents

    def wait_complete(self, timeout: float = 90) -> float:
        """Wait until every valid eventId is processed and the read model has every customer."""
        deadline = time.monotonic() + timeout
        while not self.complete():
            if time.monotonic() > deadline:
                for worker in self.alive_workers():
                    self.notes.append(f"worker log: {worker.log_path}")
                with contextlib.suppress(Exception):
                    self.notes.append(
                        f"counts (processed, customers, documents): {self.counts()} of {len(self.valid_expected())}"
                    )
                break
            time.sleep(0.25)
        return time.monotonic()


# -- invariants --------------------------------------------------------------------------------


def check_invariants(stack: Stack, run: Run, complete_at: float | None = None) -> Report:
    """Every DESIGN.md invariant over the final state; appends a row to test-results/reliability-results.md.

    Raises AssertionError listing every failed invariant (after writing the row)."""
    complete_at = complete_at or time.monotonic()
    failures: list[str] = list(run.failures)

    def expect(condition: bool, message: str) -> None:
        if not condition:
            failures.append(message)

    expected_events = run.valid_expected()
    by_user: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in expected_events.values():
        by_user[event["payload"]["userId"]].append(event)
    user_ids = list(by_user)

    customers = stack.sql(
        "SELECT c.id::text, c.user_id::text, c.customer_number, p.marketing_communications"
        " FROM customers c LEFT JOIN customer_preferences p ON p.customer_id = c.id"
    )
    mine = [row for row in customers if row[1] in by_user]
    foreign = len({row[0] for row in customers}) - len({row[0] for row in mine})
    if foreign:
        run.notes.append(f"{foreign} customer(s) in the database from users outside this run (a backlog)")
    # 1. exactly one customer and one preferences row per valid user
    per_user: dict[str, int] = defaultdict(int)
    for row in mine:
        per_user[row[1]] += 1
    missing = [u for u in user_ids if per_user[u] == 0]
    doubled = [u for u, n in per_user.items() if n > 1]
    expect(not missing, f"{len(missing)} valid user(s) without a customer, e.g. {missing[:3]}")
    expect(not doubled, f"{len(doubled)} user(s) with more than one customer (or preferences row), e.g. {doubled[:3]}")
    prefs = stack.sql(
        "SELECT c.id::text, COUNT(p.customer_id) FROM customers c LEFT JOIN customer_preferences p"
        " ON p.customer_id = c.id GROUP BY c.id HAVING COUNT(p.customer_id) <> 1"
    )
    expect(prefs == [], f"{len(prefs)} customer(s) without exactly one preferences row")
    invalid_users = stack.sql("SELECT COUNT(*) FROM customers WHERE user_id::text LIKE 'not-a-uuid%%'")
    expect(invalid_users == [(0,)], "a customer was created from an invalid record")
    # 2. gapless, unique numbers per month over the whole database; counter = count
    numbers: dict[str, list[int]] = defaultdict(list)
    for (number,) in stack.sql("SELECT customer_number FROM customers"):
        _, year_month, sequence = number.split("-")
        numbers[year_month].append(int(sequence))
    for year_month, sequences in numbers.items():
        expected = list(range(1, len(sequences) + 1))
        expect(sorted(sequences) == expected, f"gap or repeat in {year_month}: {_gaps(sequences)}")
    counters = dict(stack.sql("SELECT year_month, current_value FROM customer_number_sequences"))
    expect(
        counters == {ym: len(seqs) for ym, seqs in numbers.items()},
        f"counters {counters} differ from counts { {ym: len(s) for ym, s in numbers.items()} } (burnt numbers)",
    )
    # 3. one CustomerRegistered in the event store per customer; no orphan events
    orphans = stack.sql(
        "SELECT COUNT(*) FROM event_store e LEFT JOIN customers c ON c.id = e.aggregate_id WHERE c.id IS NULL"
    )
    expect(orphans == [(0,)], f"{orphans[0][0]} event-store row(s) without a customer")
    per_customer = stack.sql(
        "SELECT c.id::text, COUNT(e.event_id) FROM customers c LEFT JOIN event_store e ON e.aggregate_id = c.id"
        " GROUP BY c.id HAVING COUNT(e.event_id) <> 1"
    )
    expect(per_customer == [], f"{len(per_customer)} customer(s) without exactly one event-store row")
    # every valid eventId processed, linked to its user's customer
    customer_of_user = {row[1]: row[0] for row in mine}
    processed = dict(
        stack.sql(
            "SELECT event_id::text, customer_id::text FROM processed_events WHERE event_id = ANY(%s::uuid[])",
            (list(run.valid_events),),
        )
    )
    unprocessed = [e for e in expected_events if e not in processed]
    expect(not unprocessed, f"{len(unprocessed)} valid eventId(s) not in processed_events")
    wrong = [
        e
        for e, ev in expected_events.items()
        if e in processed and processed[e] != customer_of_user.get(ev["payload"]["userId"])
    ]
    expect(not wrong, f"{len(wrong)} processed eventId(s) linked to another customer")
    processed_on_purpose = run.dead_on_purpose & processed.keys()
    expect(not processed_on_purpose, f"{len(processed_on_purpose)} event(s) failing for good were processed")
    # 4. one read-model document per customer, with matching fields
    documents = {doc["_id"]: doc for doc in stack.mongo().find({})}
    expect(len(documents) == len(customers), f"{len(documents)} document(s) for {len(customers)} customer(s)")
    mismatched = [
        row[0]
        for row in customers
        if row[0] not in documents
        or (documents[row[0]].get("userId"), documents[row[0]].get("customerNumber"), documents[row[0]].get("_version"))
        != (row[1], row[2], 1)
    ]
    expect(not mismatched, f"{len(mismatched)} customer(s) without a matching document, e.g. {mismatched[:3]}")
    # 5. every stored CustomerRegistered on customer.events (same envelope), caused by its user's event
    stored = {
        event_id: envelope for event_id, envelope in stack.sql("SELECT event_id::text, envelope FROM event_store")
    }
    seen: set[str] = set()

    def all_published(found: list[Any]) -> bool:
        for _, value in found[len(seen_count) :]:
            if isinstance(value, dict) and value.get("eventId") in stored:
                seen.add(value["eventId"])
        seen_count[:] = found
        return stored.keys() <= seen

    seen_count: list[Any] = []
    published = read_topic(stack, CUSTOMER_EVENTS, run.since_customer, all_published, timeout=30, decode=True)
    ours = [value for _, value in published if isinstance(value, dict) and value.get("eventId") in stored]
    lost = stored.keys() - {value["eventId"] for value in ours}
    expect(not lost, f"{len(lost)} stored CustomerRegistered event(s) never reached customer.events")
    differing = [v["eventId"] for v in ours if v != stored[v["eventId"]]]
    expect(not differing, f"{len(differing)} published envelope(s) differ from the event store")
    # a backlog's customers (users outside this run) are published too; every other event has our cause
    foreign_customers = {row[0] for row in customers if row[1] not in by_user}
    uncaused = [
        v["eventId"]
        for v in ours
        if v.get("aggregateId") not in foreign_customers and v.get("causationId") not in run.valid_events
    ]
    expect(not uncaused, f"{len(uncaused)} published event(s) not caused by this run's input")
    duplicates = len(ours) - len({v["eventId"] for v in ours})
    # 6. every rejected input in the DLQ; no valid input in the DLQ
    valid_keys = {event["payload"]["userId"].encode() for event in expected_events.values()}
    due = run.invalid_keys | {run.valid_events[e]["payload"]["userId"].encode() for e in run.dead_on_purpose}

    def all_dead_lettered(found: list[Any]) -> bool:
        return due <= {record.key for record in found}

    dead = read_topic(stack, DLQ, run.since_dlq, all_dead_lettered, timeout=20)
    dead_keys = [record.key for record in dead]
    not_in_dlq = due - set(dead_keys)
    expect(not not_in_dlq, f"{len(not_in_dlq)} rejected or failing record(s) missing from the DLQ")
    dlq_count = sum(1 for key in dead_keys if key in due or key in valid_keys)
    valid_in_dlq = sum(1 for key in dead_keys if key in valid_keys)
    expect(not valid_in_dlq, f"{valid_in_dlq} valid record(s) dead-lettered")

    recoveries = [run.monitor.recovery(t, metric, complete_at, base) for t, metric, base in run.fault_ends]
    if len(recoveries) > 1:
        run.notes.append("recovery per fault (s): " + ", ".join(f"{r:.1f}" for r in recoveries))
    report = Report(
        test=run.name,
        events_in=len(run.produced),
        valid_users=len(user_ids),
        invalid=len(run.invalid_keys),
        customers_out=len(mine),
        duplicates_on_topic=duplicates,
        dlq=dlq_count,
        valid_in_dlq=valid_in_dlq,
        recovery_s=max(recoveries) if recoveries else None,
        wall_s=time.monotonic() - run.started,
        failures=failures,
        notes=run.notes,
    )
    print("\n" + str(report))
    append_result(report)
    assert not failures, "invariants failed:\n" + "\n".join(failures)
    return report


def _event_id(record: tuple[bytes, bytes]) -> str | None:
    try:
        value = json.loads(record[1])
    except ValueError:
        return None
    event_id = value.get("eventId") if isinstance(value, dict) else None
    return event_id if isinstance(event_id, str) else None


def _gaps(sequences: list[int]) -> str:
    present = set(sequences)
    gaps = [n for n in range(1, max(sequences) + 1) if n not in present][:5]
    repeats = sorted({n for n in sequences if sequences.count(n) > 1})[:5] if len(sequences) < 20000 else []
    return f"missing {gaps}, repeated {repeats}, max {max(sequences)}, count {len(sequences)}"


_results_lock = threading.Lock()


def append_result(report: Report) -> None:
    with _results_lock:
        if not RESULTS.exists():
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(RESULTS_HEADER)
        with RESULTS.open("a") as handle:
            handle.write(report.row() + "\n")


class Producer(threading.Thread):
    """Produces chunks at a steady pace in the background; a chunk that fails (Kafka down) is retried."""

    def __init__(self, run: Run, chunks: list[list[tuple[bytes, bytes]]], interval: float):
        super().__init__(daemon=True)
        self.run_ = run
        self.chunks = chunks
        self.interval = interval
        self.done_at: float | None = None
        self.errors: list[str] = []
        self.produced_chunks = 0

    def run(self) -> None:
        for chunk in self.chunks:
            deadline = time.monotonic() + 120
            while True:
                try:
                    self.run_.produce(chunk)
                    break
                except Exception as error:  # Kafka restarting: try again
                    self.errors.append(type(error).__name__)
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(1)
            self.produced_chunks += 1
            time.sleep(self.interval)
        self.done_at = time.monotonic()

    def wait(self, timeout: float = 180) -> None:
        self.join(timeout)
        assert self.done_at is not None, f"producer did not finish ({self.produced_chunks} chunks, {self.errors[-3:]})"
        if self.errors:
            self.run_.notes.append(f"producer retried {len(self.errors)} time(s): {sorted(set(self.errors))}")
