"""What the stores allow without Kafka and Faust: the ceilings the pipeline is compared with.

- ``database_limit``: the service's own use case (``register_customers``) over the real
  PostgreSQL unit of work, then ``mark_published``, batch after batch on one connection, with
  the same events and batch size as the pipeline: the same SQL per event, and the same Python
  that builds it, minus Kafka, Faust, the codec and the projector.
- ``pgbench``: the five-statement transaction (counter upsert, customers, preferences, event
  store, processed events) as raw SQL, ``-M prepared``, one client, one event per transaction.
- ``read_model_limit``: the real read-model adapter's ``upsert`` (one unordered ``insert_many``
  per batch) of the same documents, on a fresh MongoDB database with the service's indexes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from acme_customer.adapters.migrations import apply_migrations
from acme_customer.adapters.mongo import MongoReadModel
from acme_customer.adapters.postgres import PostgresCustomerStore, PostgresProfiles
from acme_customer.domain.validation import parse_user_registered
from acme_customer.service_layer.project_customers import REGISTRATION_VERSION
from acme_customer.service_layer.register_customers import register_customers
from benchmarks.pipeline import scratch_database
from benchmarks.workload import burst_events

PGBENCH_SCRIPT = Path(__file__).with_name("pgbench_registration.sql")


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    """The URL of a new PostgreSQL database with the service's schema; dropped afterwards."""
    with scratch_database() as (_, url):
        apply_migrations(url)
        yield url


def database_limit(events: Sequence[dict[str, Any]], batch_size: int) -> float:
    """Events per second through ``register_customers`` + ``mark_published`` alone."""
    users = [parse_user_registered(event) for event in events]

    async def run(url: str) -> float:
        store = PostgresCustomerStore.create(url, max_size=1)
        await store.open()
        try:
            started = time.perf_counter()
            for start in range(0, len(users), batch_size):
                outcomes = await register_customers(users[start : start + batch_size], store, lambda: datetime.now(UTC))
                await store.mark_published([o.event.event_id for o in outcomes if o.publish and o.event is not None])
            return len(users) / (time.perf_counter() - started)
        finally:
            await store.close()

    with fresh_database() as url:
        return asyncio.run(run(url))


def pgbench_binary() -> str:
    """pgbench from the pgserver wheel's PostgreSQL (the local stack's), or PGBENCH, or one on PATH."""
    if explicit := os.environ.get("PGBENCH"):
        return explicit
    with contextlib.suppress(ImportError):
        import pgserver

        candidate = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pgbench"
        if candidate.exists():
            return str(candidate)
    return "pgbench"


def _sample_envelope() -> str:
    """A real CustomerRegistered envelope as JSON text, so the event store row has its real size."""
    events, _ = burst_events(1)
    with fresh_database() as url:

        async def one() -> str:
            store = PostgresCustomerStore.create(url, max_size=1)
            await store.open()
            try:
                (outcome,) = await register_customers(
                    [parse_user_registered(events[0])], store, lambda: datetime.now(UTC)
                )
            finally:
                await store.close()
            assert outcome.event is not None
            return json.dumps(outcome.event.to_dict())

        return asyncio.run(one())


def pgbench_tps(seconds: float) -> float:
    """Transactions per second of ``pgbench -M prepared``, one client, the five-statement transaction."""
    script = PGBENCH_SCRIPT.read_text().replace("@ENVELOPE@", "'" + _sample_envelope().replace("'", "''") + "'")
    with fresh_database() as url, tempfile.NamedTemporaryFile("w", suffix=".sql") as script_file:
        script_file.write(script)
        script_file.flush()
        result = subprocess.run(
            [
                pgbench_binary(),
                "-n",
                "-M",
                "prepared",
                "-c",
                "1",
                "-j",
                "1",
                "-T",
                str(max(1, round(seconds))),
                "-f",
                script_file.name,
                url,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    match = re.search(r"^tps = ([\d.]+)", result.stdout, re.MULTILINE)
    if result.returncode != 0 or match is None:
        raise RuntimeError(f"pgbench failed ({result.returncode}): {result.stderr.strip()[-500:]}")
    return float(match.group(1))


def registered_documents(database_url: str) -> list[dict[str, Any]]:
    """Every customer of a database as its read-model document, built by the service's own code."""

    async def load() -> list[dict[str, Any]]:
        store = PostgresCustomerStore.create(database_url, max_size=1)
        await store.open()
        try:
            async with store.pool.connection() as connection:
                ids = [row[0] for row in await (await connection.execute("SELECT id FROM customers")).fetchall()]
            customers = await PostgresProfiles(store.pool).customers(ids)
        finally:
            await store.close()
        return [customer.to_read_model(REGISTRATION_VERSION) for customer in customers]

    return asyncio.run(load())


def read_model_limit(documents: Sequence[dict[str, Any]], batch_size: int) -> float:
    """Documents per second through the read model adapter's ``upsert``, ``batch_size`` at a time."""

    async def run(name: str) -> float:
        read_model = MongoReadModel.create(os.environ["MONGODB_URI"], name)
        try:
            await read_model.ensure_indexes()
            batches = [
                [dict(d) for d in documents[start : start + batch_size]]
                for start in range(0, len(documents), batch_size)
            ]
            started = time.perf_counter()
            for batch in batches:
                written = await read_model.upsert(batch)
                assert written == len(batch), f"{len(batch) - written} document(s) not written"
            return len(documents) / (time.perf_counter() - started)
        finally:
            await read_model.client.drop_database(name)
            await read_model.close()

    return asyncio.run(run(f"bench_{uuid.uuid4().hex[:8]}"))
