"""A real worker (``faust -A acme_customer.app worker``) on databases of its own, and a burst through it.

Each run creates a PostgreSQL database and a MongoDB database named ``bench_<hex>``, starts a
worker on them, waits until the consumer group has no backlog (so only this run's records
reach them), and drops both at the end. The worker's CPU time and peak RSS come from /proc.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from pymongo import MongoClient

from acme_customer.adapters.consumer_lag import GroupOffsets
from acme_customer.adapters.kafka import CUSTOMER_EVENTS, USER_EVENTS
from benchmarks.workload import Burst
from tests.e2e.conftest import REPO, Stack, Worker, _with_database, http_text, sample

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
POLL_S = 0.05
STALL_S = 120.0  # no progress for this long: the run failed (a record dead-lettered, a worker stuck)
GROUP = "customer-service"  # the contract's consumer group (acme_customer.app.APP_ID; importing the app configures it)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime: fields 14 and 15


def rss_peak_mb(pid: int) -> float:
    """Peak resident set size (VmHWM) of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


@dataclass
class BenchWorker:
    """A worker process and the fresh stores it writes to."""

    stack: Stack
    worker: Worker
    name: str
    more: list[Worker] = field(default_factory=list)  # further workers in the same group (scale-out runs)

    @property
    def pid(self) -> int:
        assert self.worker.process is not None
        return self.worker.process.pid

    @property
    def pids(self) -> list[int]:
        return [self.pid] + [worker.process.pid for worker in self.more if worker.process is not None]

    def transaction_seconds(self) -> tuple[float, int]:
        """Sum and count of ``customer_creation_duration_seconds`` over the workers: each batch's
        transaction, from its first lookup to its COMMIT. The month's counter row lock is held
        for part of it (from the counter update on), so its mean bounds the lock's hold time."""
        pages = [http_text(f"{worker.url}/metrics") for worker in [self.worker, *self.more]]
        total = sum(sample(page, "customer_creation_duration_seconds_sum") for page in pages)
        return total, int(sum(sample(page, "customer_creation_duration_seconds_count") for page in pages))

    def counts(self) -> dict[str, int]:
        """Rows and documents now in this run's stores."""
        (row,) = self.stack.sql(
            "SELECT (SELECT COUNT(*) FROM customers), (SELECT COUNT(*) FROM customer_preferences),"
            " (SELECT COUNT(*) FROM event_store), (SELECT COUNT(*) FROM event_store WHERE published_at IS NOT NULL),"
            " (SELECT COUNT(*) FROM processed_events)"
        )
        names = ("customers", "preferences", "events_stored", "events_published", "processed_events")
        return {**dict(zip(names, row, strict=True)), "documents": self.documents()}

    def documents(self) -> int:
        return int(self.stack.mongo().estimated_document_count())


def _backlog(bootstrap: str, stack: Stack) -> int:
    """Records of the input and output topics that the group has not committed yet."""

    async def committed() -> dict[tuple[str, int], int | None]:
        offsets = GroupOffsets(bootstrap, GROUP)
        try:
            return await offsets.committed(ends)
        finally:
            await offsets.close()

    ends = {(topic, p): end for topic in (USER_EVENTS, CUSTOMER_EVENTS) for p, end in stack.end_offsets(topic).items()}
    done = asyncio.run(committed())
    return sum(max(0, end - (done.get(tp) or 0)) for tp, end in ends.items())


@contextlib.contextmanager
def scratch_database() -> Iterator[tuple[str, str]]:
    """(name, URL) of a new, empty PostgreSQL database ``bench_<hex>`` beside DATABASE_URL's; dropped afterwards."""
    name = f"bench_{uuid.uuid4().hex[:8]}"
    admin_url = os.environ["DATABASE_URL"]
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    try:
        yield name, _with_database(admin_url, name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextlib.contextmanager
def bench_worker(
    extra_env: dict[str, str], log_name: str = "bench-worker.log", workers: int = 1
) -> Iterator[BenchWorker]:
    """Ready workers (one by default) on fresh databases, with no backlog in their consumer group;
    dropped afterwards."""
    with scratch_database() as (name, url):
        try:
            yield from _worker_on(name, url, extra_env, log_name, workers)
        finally:
            MongoClient(os.environ["MONGODB_URI"]).drop_database(name)


def _worker_on(
    name: str, url: str, extra_env: dict[str, str], log_name: str, workers: int = 1
) -> Iterator[BenchWorker]:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "MONGODB_DATABASE": name,
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "INFO"),  # the service's default, as in production
        **extra_env,
    }
    env.pop("API_TOKENS", None)
    env.pop("API_TOKENS_FILE", None)
    stack = Stack(env=env, database_url=env["DATABASE_URL"], mongo_database=name)
    log_dir = Path(os.environ.get("DEVSTACK_DIR", REPO / ".devstack")) / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    worker = Worker(env=env, log_path=log_dir / log_name).start()
    more = [
        Worker(env=env, log_path=log_dir / log_name.replace(".log", f"-{n}.log")).start() for n in range(2, workers + 1)
    ]
    try:
        worker.wait_ready()
        if more:
            _wait_spread([worker, *more])
        deadline = time.monotonic() + 300
        while (left := _backlog(env["KAFKA_BOOTSTRAP_SERVERS"], stack)) > 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the consumer group still has {left} records of backlog after 300 s")
            time.sleep(0.5)
        yield BenchWorker(stack, worker, name, more)
    finally:
        for each in [worker, *more]:
            each.stop(timeout=60)


def _wait_spread(workers: list[Worker], timeout: float = 180) -> None:
    """Until every worker holds partitions and together they hold both topics' 24, once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = [worker.ready() for worker in workers]
        if all(states) and sum(state["assignedPartitions"] for state in states if state) == 24:
            return
        time.sleep(0.5)
    raise RuntimeError(f"{len(workers)} workers did not share the partitions within {timeout:.0f} s")


@dataclass
class PipelineRun:
    """One burst through one worker."""

    events: int
    unique: int
    batch_size: int
    committed_s: float  # first event in -> last customer committed and its event published
    projected_s: float  # first event in -> last document visible in MongoDB
    cpu_s: float  # the worker's CPU time over the same span as projected_s
    rss_peak_mb: float
    counts: dict[str, int]
    committed_per_second: list[int] = field(default_factory=list)  # customers committed in second 0, 1, ...
    load_average: tuple[float, float, float] = (0.0, 0.0, 0.0)
    workers: int = 1
    transactions: tuple[float, int] = (0.0, 0)  # seconds in registration transactions, and how many
    # after the last event is published the projector is alone on the cores: its own pace
    drain: tuple[int, float] = (0, 0.0)  # documents still to project then, and the seconds they took

    @property
    def drain_per_s(self) -> float | None:
        """Documents projected per second once the registrations are all done (None: nothing was left)."""
        documents, seconds = self.drain
        return documents / seconds if documents and seconds > 0 else None

    @property
    def transaction_ms_mean(self) -> float:
        seconds, count = self.transactions
        return seconds / count * 1000 if count else 0.0

    @property
    def events_per_s(self) -> float:
        return self.events / self.committed_s

    @property
    def projected_per_s(self) -> float:
        return self.events / self.projected_s

    @property
    def cpu_s_per_1000(self) -> float:
        return self.cpu_s / self.events * 1000

    def accounting_problems(self) -> list[str]:
        """Every delivery must have become exactly one customer, row, event and document: what is off."""
        return [
            f"{name}: {count}, expected {self.unique}" for name, count in self.counts.items() if count != self.unique
        ]


def run_burst(
    burst: Burst,
    batch_size: int,
    timeout: float = 900,
    while_loaded: Callable[[BenchWorker], Any] | None = None,
    keep: Callable[[BenchWorker], Any] | None = None,
    extra_env: dict[str, str] | None = None,
    workers: int = 1,
) -> PipelineRun:
    """Produce ``burst`` at once into a fresh worker with ``BATCH_SIZE=batch_size`` and time it to the end.

    ``while_loaded(worker)`` is called as the burst starts and its result called when the burst
    is projected (a profiler); ``keep(worker)`` runs before the stores are dropped.
    """
    with bench_worker({"BATCH_SIZE": str(batch_size), **(extra_env or {})}, workers=workers) as bench:
        expected = burst.unique
        cpu_before = sum(cpu_seconds(pid) for pid in bench.pids)
        stop_profile = while_loaded(bench) if while_loaded else None
        started = time.time()
        bench.stack.produce(burst.records)
        committed_at = projected_at = 0.0
        left_to_project = 0
        progress, progressed_at = -1, time.time()
        while not projected_at:
            now = time.time()
            documents = 0
            if not committed_at:
                (published,) = bench.stack.sql("SELECT COUNT(*) FROM event_store WHERE published_at IS NOT NULL")[0]
                if published >= expected:
                    committed_at, left_to_project = now, expected - bench.documents()
            else:
                documents = bench.documents()
                projected_at = now if documents >= expected else 0.0
            if published + documents > progress:
                progress, progressed_at = published + documents, now
            if now - progressed_at > STALL_S or now - started > timeout:
                raise RuntimeError(f"burst stalled or not done after {now - started:.0f} s: {bench.counts()}")
            time.sleep(POLL_S)
        cpu = sum(cpu_seconds(pid) for pid in bench.pids) - cpu_before
        if stop_profile:
            stop_profile()
        # the database's own clock says when the last event was marked published (after Kafka's ack)
        (last_published,) = bench.stack.sql("SELECT EXTRACT(EPOCH FROM MAX(published_at)) FROM event_store")[0]
        per_second = bench.stack.sql(
            "SELECT FLOOR(EXTRACT(EPOCH FROM created_at) - %s)::int AS second, COUNT(*) FROM customers"
            " GROUP BY 1 ORDER BY 1",
            (started,),
        )
        timeline = [0] * (max((second for second, _ in per_second), default=-1) + 1)
        for second, count in per_second:
            timeline[max(0, second)] += count
        run = PipelineRun(
            events=len(burst.records),
            unique=expected,
            batch_size=batch_size,
            committed_s=min(float(last_published) - started, committed_at - started),
            projected_s=projected_at - started,
            cpu_s=cpu,
            rss_peak_mb=max(rss_peak_mb(pid) for pid in bench.pids),
            counts=bench.counts(),
            committed_per_second=timeline,
            load_average=os.getloadavg(),
            workers=workers,
            transactions=bench.transaction_seconds(),
            drain=(left_to_project, projected_at - committed_at),
        )
        if keep:
            keep(bench)
        return run
