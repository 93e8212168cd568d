"""How long ``acme-customer verify`` takes over N healthy customers, and how much memory it holds.

A fresh PostgreSQL database gets N customers straight from SQL (``generate_series``: customers,
preferences, one published CustomerRegistered each in the event store, processed_events, the
month counters; time-ordered v7-style ids over the twelve months of 2025); a fresh MongoDB
database gets each customer's document as the projection writes it (``Customer.to_read_model``
over the rows read back, bulk-inserted). Then the console script runs ``verify`` over them;
its wall time and peak memory (max RSS) are printed, and both databases are dropped.

    set -a; . .devstack/env; set +a
    .venv/bin/python -m benchmarks.verify_scale --customers 100000
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from pymongo import MongoClient

from acme_customer.adapters.migrations import apply_migrations
from acme_customer.adapters.mongo import MongoReadModel
from acme_customer.adapters.postgres import PROFILE_COLUMNS, customer_of
from acme_customer.service_layer.project_customers import REGISTRATION_VERSION

REPO = Path(__file__).resolve().parents[1]
BATCH = 5000

# A v7-style UUID from a time and a row number: 48 bits of milliseconds, version 7, variant 8.
_FILL = """
CREATE TEMP TABLE gen AS
SELECT i, ts, to_char(ts AT TIME ZONE 'UTC', 'YYYYMM') AS ym,
       row_number() OVER (PARTITION BY to_char(ts AT TIME ZONE 'UTC', 'YYYYMM') ORDER BY i) AS seq,
       (lpad(to_hex((extract(epoch FROM ts) * 1000)::bigint), 12, '0') || '7' || substr(h, 1, 3) || '8'
        || substr(h, 4, 15))::uuid AS id,
       md5(i::text || 'user')::uuid AS user_id, md5(i::text || 'event')::uuid AS event_id,
       md5(i::text || 'input')::uuid AS input_id
FROM (SELECT i, timestamptz '2025-01-01 00:00:00+00' + (i - 1) * (interval '365 days' / %(n)s) AS ts,
             md5(i::text) AS h
      FROM generate_series(1, %(n)s) AS i) s;

INSERT INTO customers (id, user_id, customer_number, first_name, last_name, display_name, email,
                       registered_at, last_activity_at)
SELECT id, user_id, 'ACME-' || ym || '-' || lpad(seq::text, 6, '0'), 'First' || i, 'Last' || i,
       'First' || i || ' Last' || i, 'customer' || i || '@example.com', ts, ts
FROM gen;

INSERT INTO customer_preferences (customer_id, marketing_communications) SELECT id, mod(i, 3) = 0 FROM gen;

INSERT INTO event_store (event_id, event_type, event_version, aggregate_type, aggregate_id, aggregate_version,
                         correlation_id, causation_id, occurred_at, envelope, published_at)
SELECT event_id, 'CustomerRegistered', '1.0', 'Customer', id, 1, input_id, input_id, ts,
       jsonb_build_object(
           'eventId', event_id, 'eventType', 'CustomerRegistered', 'eventVersion', '1.0',
           'timestamp', to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
           'aggregateId', id, 'aggregateType', 'Customer', 'correlationId', input_id, 'causationId', input_id,
           'payload', jsonb_build_object(
               'customerId', id, 'userId', user_id,
               'customerNumber', 'ACME-' || ym || '-' || lpad(seq::text, 6, '0'),
               'email', 'customer' || i || '@example.com', 'firstName', 'First' || i, 'lastName', 'Last' || i,
               'status', 'PENDING_VERIFICATION', 'type', 'INDIVIDUAL',
               'registeredAt', to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))),
       ts
FROM gen;

INSERT INTO processed_events (event_id, event_type, customer_id) SELECT input_id, 'UserRegistered', id FROM gen;

INSERT INTO customer_number_sequences (year_month, current_value) SELECT ym, max(seq) FROM gen GROUP BY ym;
"""


def fill_postgres(url: str, customers: int) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        for statement in _FILL.split(";\n\n"):
            connection.execute(statement.encode(), {"n": customers})
        connection.execute("VACUUM ANALYZE")


def fill_mongo(url: str, mongodb_uri: str, database: str) -> None:
    """Each customer's document as the projection writes it, in batches."""
    collection: Any = MongoClient(mongodb_uri)[database]["customers"]
    after = None
    with psycopg.connect(url) as connection, connection.cursor(row_factory=dict_row) as cursor:
        while True:
            cursor.execute(
                (
                    f"SELECT {PROFILE_COLUMNS} FROM customers c JOIN customer_preferences p ON p.customer_id = c.id"
                    + (" WHERE c.id > %(after)s" if after else "")
                    + " ORDER BY c.id LIMIT %(batch)s"
                ).encode(),
                {"after": after, "batch": BATCH},
            )
            rows = cursor.fetchall()
            if not rows:
                return
            collection.insert_many(
                [customer_of(row).to_read_model(REGISTRATION_VERSION) for row in rows], ordered=False
            )
            after = rows[-1]["customer_id"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--keep", action="store_true", help="leave the databases (their names are printed)")
    parser.add_argument(
        "--without-documents",
        action="store_true",
        help="leave the read model empty: times the PostgreSQL side alone (verify then reports every document missing)",
    )
    args = parser.parse_args()
    # stopped (timeout, kill): still drop the databases in ``finally``
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    admin_url, mongodb_uri = os.environ["DATABASE_URL"], os.environ["MONGODB_URI"]
    name = f"bench_verify_{uuid.uuid4().hex[:8]}"
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        apply_migrations(url)
        started = time.monotonic()
        fill_postgres(url, args.customers)
        print(f"PostgreSQL filled with {args.customers:,} customers in {time.monotonic() - started:.0f} s", flush=True)
        started = time.monotonic()
        import asyncio

        async def indexes() -> None:
            read_model = MongoReadModel.create(mongodb_uri, name)
            await read_model.ensure_indexes()
            await read_model.close()

        asyncio.run(indexes())
        if not args.without_documents:
            fill_mongo(url, mongodb_uri, name)
            print(f"MongoDB filled in {time.monotonic() - started:.0f} s", flush=True)

        env = {**os.environ, "DATABASE_URL": url, "MONGODB_DATABASE": name}
        started = time.monotonic()
        result = subprocess.run(
            [str(REPO / ".venv" / "bin" / "acme-customer"), "verify"], env=env, capture_output=True, text=True
        )
        elapsed = time.monotonic() - started
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(result.stdout + result.stderr, end="")
        print(
            f"verify over {args.customers:,} customers: exit {result.returncode}, {elapsed:.0f} s, "
            f"peak RSS {peak_mib:.0f} MiB"
        )
    finally:
        if args.keep:
            print(f"kept: PostgreSQL database and MongoDB database {name}")
        else:
            MongoClient(mongodb_uri).drop_database(name)
            with psycopg.connect(admin_url, autocommit=True) as admin:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


if __name__ == "__main__":
    main()
