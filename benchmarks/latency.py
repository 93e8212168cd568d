"""Latency at a fixed offered load: each UserRegistered stamped as it is sent, then followed to its ends.

- ``commit``: the event's timestamp -> its customer's row (``customers.created_at``, the
  transaction's ``NOW()``: its start, a few ms before the commit at these batch sizes);
- ``published``: -> ``event_store.published_at``, set once Kafka acknowledged the CustomerRegistered;
- ``read_model``: -> its document visible in MongoDB. The documents are counted every 20 ms
  (a cheap count; polling each document would load the stand-in), and the k-th document to
  appear is paired with the k-th event published: exact when the projection keeps publication
  order, and within one projection batch otherwise.
"""

from __future__ import annotations

import asyncio
import bisect
import os
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer

from acme_customer.adapters.kafka import USER_EVENTS
from benchmarks.pipeline import bench_worker
from benchmarks.workload import avro_codec, registration

COUNT_POLL_S = 0.02
SERIES = ("commit", "published", "read_model")


@dataclass
class LatencyRun:
    offered_rate: float
    seconds: float
    sent: int
    achieved_rate: float  # what the producer managed to offer
    latencies_ms: dict[str, list[float]] = field(default_factory=dict)  # series -> sorted latencies
    load_average: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def percentiles(self) -> dict[str, dict[str, float]]:
        return {name: percentiles(values) for name, values in self.latencies_ms.items()}


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p95, p99 and max of sorted values (nearest rank)."""
    ranked = sorted(values)

    def rank(p: float) -> float:
        return ranked[min(len(ranked) - 1, max(0, round(p / 100 * len(ranked)) - 1))]

    return {"p50": rank(50), "p95": rank(95), "p99": rank(99), "max": ranked[-1]}


async def _offer(bootstrap: str, registry_url: str, rate: float, seconds: float) -> dict[str, float]:
    """Send ``rate`` registrations a second for ``seconds``, on a schedule; userId -> send time (epoch s)."""
    codec = await avro_codec(registry_url)
    rng = random.Random(500)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()
    sent: dict[str, float] = {}
    try:
        started = time.monotonic()
        for index in range(int(rate * seconds)):
            # on a schedule, not sleep after sleep: a slow send does not stretch the run
            await asyncio.sleep(max(0.0, started + index / rate - time.monotonic()))
            event = registration(rng, index)
            event["timestamp"] = _rfc3339(time.time())
            event["payload"].pop("registeredAt")  # registered now: the month of the event's timestamp
            sent[event["payload"]["userId"]] = time.time()
            await producer.send(USER_EVENTS, await codec.encode(event), key=event["aggregateId"].encode())
        await producer.flush()
    finally:
        await producer.stop()
    return sent


def _rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def run_offered_load(rate: float, seconds: float, timeout: float = 300, workers: int = 1) -> LatencyRun:
    """``workers`` workers (one group) at the default batch size, ``rate`` events/s for ``seconds``.

    Every event is followed to MongoDB.
    """
    with bench_worker({}, log_name="bench-latency-worker.log", workers=workers) as bench:
        counts: list[tuple[float, int]] = []
        stop = threading.Event()

        def poll_documents() -> None:
            collection = bench.stack.mongo()
            while not stop.is_set():
                counts.append((time.time(), int(collection.estimated_document_count())))
                time.sleep(COUNT_POLL_S)

        poller = threading.Thread(target=poll_documents, name="document-counter", daemon=True)
        poller.start()
        began = time.monotonic()
        try:
            env = bench.stack.env
            sent = asyncio.run(_offer(env["KAFKA_BOOTSTRAP_SERVERS"], env["SCHEMA_REGISTRY_URL"], rate, seconds))
            offered_for = time.monotonic() - began
            deadline = time.monotonic() + timeout
            while not counts or counts[-1][1] < len(sent):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"offered load not projected after {timeout:.0f} s: {bench.counts()}")
                time.sleep(0.1)
        finally:
            stop.set()
            poller.join()
        rows = bench.stack.sql(
            "SELECT c.user_id::text, EXTRACT(EPOCH FROM c.created_at), EXTRACT(EPOCH FROM e.published_at)"
            " FROM customers c JOIN event_store e ON e.aggregate_id = c.id ORDER BY e.published_at, c.customer_number"
        )
        return LatencyRun(
            offered_rate=rate,
            seconds=seconds,
            sent=len(sent),
            achieved_rate=len(sent) / offered_for,
            latencies_ms=_latencies(sent, rows, counts),
            load_average=os.getloadavg(),
        )


def _latencies(
    sent: dict[str, float], rows: list[tuple[Any, ...]], counts: list[tuple[float, int]]
) -> dict[str, list[float]]:
    ours = [
        (sent[user_id], float(created), float(published)) for user_id, created, published in rows if user_id in sent
    ]
    if len(ours) != len(sent):
        raise RuntimeError(f"{len(sent) - len(ours)} of {len(sent)} offered events have no customer")
    seen = [count for _, count in counts]
    visible = []
    for k, (sent_at, _, _) in enumerate(ours, start=1):  # in order of publication
        first = bisect.bisect_left(seen, k)  # the first count that shows k documents
        visible.append((counts[first][0] - sent_at) * 1000)
    return {
        "commit": sorted((created - sent_at) * 1000 for sent_at, created, _ in ours),
        "published": sorted((published - sent_at) * 1000 for sent_at, _, published in ours),
        "read_model": sorted(visible),
    }
