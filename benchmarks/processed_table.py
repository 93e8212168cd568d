"""The processed-eventId table's cost and benefit (issue 12), on the local stack:

1. throughput with PROCESSED_CACHE=table and =memory, alternating runs in the same session;
2. the recovery of a worker that takes over partitions with N entries in the table
   (entries written straight to the changelog topic; the topic is deleted afterwards);
3. redeliveries after a kill -9 in the middle of a run: how many reached PostgreSQL.

    set -a; . .devstack/env; set +a
    .venv/bin/python -m benchmarks.processed_table --events 5000 --repeat 3 --entries 1000000

No other worker may run against the stack meanwhile (they would share the consumer group).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid
from pathlib import Path

import psycopg
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from pymongo import MongoClient

from acme_customer.adapters.topics import ensure_topics
from benchmarks.pipeline import run_burst
from benchmarks.workload import burst
from tests.e2e.conftest import REPO, Stack, Worker, _with_database, as_record, http_text, sample, user_registered

CHANGELOG = "customer-service-processed-event-ids-changelog"
FAST_SESSION = {"BROKER_SESSION_TIMEOUT": "10", "BROKER_HEARTBEAT_INTERVAL": "1", "LOG_LEVEL": "WARNING"}


class Scratch:
    """A fresh PostgreSQL and MongoDB database, dropped at the end."""

    def __init__(self) -> None:
        self.name = f"bench_{uuid.uuid4().hex[:8]}"
        self.admin_url = os.environ["DATABASE_URL"]

    def __enter__(self) -> Stack:
        with psycopg.connect(self.admin_url, autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {self.name}")
        env = {**os.environ, "DATABASE_URL": _with_database(self.admin_url, self.name), "MONGODB_DATABASE": self.name}
        return Stack(env=env, database_url=env["DATABASE_URL"], mongo_database=self.name)

    def __exit__(self, *exc: object) -> None:
        MongoClient(os.environ["MONGODB_URI"]).drop_database(self.name)
        with psycopg.connect(self.admin_url, autocommit=True) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")


def _log(name: str) -> Path:
    return REPO / ".devstack" / "logs" / f"benchmark-{name}.log"


def throughput(events: int, repeat: int) -> None:
    print(f"1. throughput, {events} registrations per run, batch size 100, alternating; events/s to PostgreSQL")
    rates: dict[str, list[float]] = {"table": [], "memory": []}
    for _ in range(repeat):
        for mode in rates:
            # new eventIds each run: the table remembers the last run's, and would skip them all
            records = burst(events, os.environ["SCHEMA_REGISTRY_URL"])
            rates[mode].append(run_burst(records, 100, extra_env={"PROCESSED_CACHE": mode}).events_per_s)
    for mode, runs in rates.items():
        print(f"   {mode:>6}: median {statistics.median(runs):.0f}  (runs {', '.join(f'{r:.0f}' for r in runs)})")
    ratio = statistics.median(rates["table"]) / statistics.median(rates["memory"])
    print(f"   table / memory = {ratio:.2f}")


async def _fill_changelog(bootstrap: str, entries: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=50, max_batch_size=1 << 20)
    await producer.start()
    try:
        now = json.dumps(time.time()).encode()
        for index in range(entries):
            key = json.dumps(str(uuid.uuid4())).encode()
            await producer.send(CHANGELOG, now, key=key, partition=index % 12)
        await producer.flush()
    finally:
        await producer.stop()


async def _delete_changelog(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if CHANGELOG in await admin.list_topics():
            await admin.delete_topics([CHANGELOG])
    finally:
        await admin.close()


def _start_to_ready(stack: Stack, name: str) -> tuple[float, float, float]:
    """(seconds from start to ready, the worker's own recovery seconds, entries it holds)."""
    worker = Worker(env={**stack.env, **FAST_SESSION}, log_path=_log(name)).start()
    began = time.monotonic()
    try:
        worker.wait_ready(timeout=900)
        ready = time.monotonic() - began
        text = http_text(f"{worker.url}/metrics")
        recovery = sample(text, "processed_cache_recovery_seconds_sum")
        return ready, recovery, sample(text, "processed_cache_entries")
    finally:
        worker.stop(timeout=60)


def recovery(entries: int) -> None:
    bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    print(f"2. recovery of a worker taking over all 12 partitions with {entries:,} entries in the table")
    with Scratch() as stack:
        asyncio.run(_delete_changelog(bootstrap))
        empty = _start_to_ready(stack, "recovery-empty")  # creates the changelog topic
        began = time.monotonic()
        asyncio.run(_fill_changelog(bootstrap, entries))
        print(f"   ({entries:,} entries written in {time.monotonic() - began:.0f} s)")
        full = _start_to_ready(stack, "recovery-full")
        asyncio.run(_delete_changelog(bootstrap))
    for label, (ready, recovered, held) in (("empty", empty), ("full", full)):
        print(f"   {label:>6}: start to ready {ready:.1f} s, table recovery {recovered:.1f} s, entries {held:,.0f}")


def redeliveries(events: int) -> None:
    print(f"3. redeliveries after a kill -9 halfway through {events} registrations")
    for mode in ("table", "memory"):
        with Scratch() as stack:
            env = {**stack.env, **FAST_SESSION, "PROCESSED_CACHE": mode}
            first = Worker(env=env, log_path=_log(f"kill-{mode}-1")).start()
            first.wait_ready(timeout=120)
            stack.produce([as_record(user_registered()) for _ in range(events)])
            while stack.sql("SELECT COUNT(*) FROM processed_events")[0][0] < events // 2:
                time.sleep(0.02)
            assert first.process is not None
            first.process.kill()
            first.process.wait()
            second = Worker(env=env, log_path=_log(f"kill-{mode}-2")).start()
            try:
                second.wait_ready(timeout=120)
                while stack.sql("SELECT COUNT(*) FROM processed_events")[0][0] < events:
                    time.sleep(0.1)
                text = http_text(f"{second.url}/metrics")
            finally:
                second.stop()
            duplicates = sample(text, 'customer_created_total{status="duplicate"}')
            hits = sample(text, "processed_cache_hits_total")
            print(
                f"   {mode:>6}: {duplicates:.0f} redelivered records already processed;"
                f" {hits:.0f} skipped from the cache, {duplicates - hits:.0f} reached PostgreSQL"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--parts", default="1,2,3")
    args = parser.parse_args()
    asyncio.run(ensure_topics(os.environ["KAFKA_BOOTSTRAP_SERVERS"]))
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; medians")
    parts = set(args.parts.split(","))
    if "1" in parts:
        throughput(args.events, args.repeat)
    if "2" in parts:
        recovery(args.entries)
    if "3" in parts:
        redeliveries(args.events)


if __name__ == "__main__":
    main()
