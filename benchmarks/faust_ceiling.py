"""What Faust alone costs per event: the ceiling of any agent on this machine, measured.

A Faust app with one agent and no work: it takes the records in batches as the service does
(``noack_take(BATCH_SIZE, within=0.05)``, concurrency 1), acknowledges each, and stops when
it has seen them all. Same worker command (``faust -A … worker``), same Kafka and the same
records as the pipeline's burst, on a topic of its own with as many partitions. Its events/s
and CPU seconds per 1,000 events are what Faust, aiokafka and asyncio take before the service
does anything (decode, PostgreSQL, publish, project), so ``pipeline ÷ this`` says how much of
the worker's budget is ours.

Run it as a module: ``python -m benchmarks.faust_ceiling`` (prints one line; the local stack's
environment must be loaded).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from benchmarks.pipeline import cpu_seconds
from benchmarks.workload import burst
from tests.e2e.conftest import REPO, Stack

TOPIC_ENV, COUNT_ENV, BATCH_ENV = "CEILING_TOPIC", "CEILING_EVENTS", "CEILING_BATCH_SIZE"
DONE = "ceiling: all records seen"


def _app() -> faust.App:
    app = faust.App(
        f"bench-ceiling-{os.environ.get(TOPIC_ENV, 'none')}",
        broker=[f"kafka://{server}" for server in os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "x").split(",")],
        autodiscover=False,
        web_enabled=False,
        store="memory://",
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_commit_every=100,
        broker_commit_interval=1.0,
    )
    topic = app.topic(
        os.environ.get(TOPIC_ENV, "none"),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    expected = int(os.environ.get(COUNT_ENV, "0"))
    batch_size = int(os.environ.get(BATCH_ENV, "100"))

    @app.agent(topic, concurrency=1)
    async def consume(stream: Any) -> None:
        seen = 0
        async for events in stream.noack_take(batch_size, within=0.05):
            for event in events:
                await stream.ack(event)
            seen += len(events)
            if seen >= expected:
                print(DONE, flush=True)

    return app


app = _app()  # the worker's app: ``faust -A benchmarks.faust_ceiling worker``


@dataclass(frozen=True)
class Ceiling:
    events: int
    seconds: float  # the first record produced -> the agent has seen the last
    cpu_s: float  # the worker's CPU over the same span

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds

    @property
    def cpu_s_per_1000(self) -> float:
        return self.cpu_s / self.events * 1000


async def _create(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


def measure(records: list[tuple[bytes | None, bytes]], batch_size: int = 100, timeout: float = 600) -> Ceiling:
    """Produce ``records`` to a fresh 12-partition topic and time a no-work Faust agent through them."""
    bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    topic = f"bench.ceiling.{uuid.uuid4().hex[:8]}"
    asyncio.run(_create(bootstrap, topic, partitions=12))
    env = {**os.environ, TOPIC_ENV: topic, COUNT_ENV: str(len(records)), BATCH_ENV: str(batch_size)}
    data = Path(os.environ.get("DEVSTACK_DIR", REPO / ".devstack")) / "bench-ceiling"
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "faust",
            "--datadir",
            str(data),
            "-A",
            "benchmarks.faust_ceiling",
            "worker",
            "-l",
            "warn",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(8)  # joined its group (an empty topic: nothing to wait for but the assignment)
        cpu_before = cpu_seconds(worker.pid)
        started = time.time()
        Stack(env=env, database_url="", mongo_database="").produce(records, topic=topic)
        assert worker.stdout is not None
        seen: list[str] = []
        for line in worker.stdout:
            seen.append(line)
            if DONE in line:
                break
            if time.time() - started > timeout:
                raise RuntimeError("the ceiling worker did not see every record in time")
        else:
            raise RuntimeError(f"the ceiling worker ended early (exit {worker.wait()}): {''.join(seen[-5:])}")
        seconds = time.time() - started
        return Ceiling(len(records), seconds, cpu_seconds(worker.pid) - cpu_before)
    finally:
        worker.terminate()
        worker.wait(timeout=60)


def main() -> None:
    events = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    records = burst(events, os.environ["SCHEMA_REGISTRY_URL"]).records
    results = [measure(records) for _ in range(runs)]
    for result in results:
        print(f"{result.events_per_s:,.0f} events/s, {result.cpu_s_per_1000:.2f} CPU s per 1,000 events")
    print(
        f"median: {statistics.median(r.events_per_s for r in results):,.0f} events/s,"
        f" {statistics.median(r.cpu_s_per_1000 for r in results):.2f} CPU s per 1,000 events"
        f" ({events:,} events, {runs} runs, load average {os.getloadavg()[0]:.1f})"
    )


if __name__ == "__main__":
    main()
