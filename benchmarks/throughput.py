"""Throughput of the whole pipeline on the local stack: UserRegistered in, customers and documents out.

Each run gets a fresh PostgreSQL database and MongoDB database and a worker started with the
given BATCH_SIZE; N unique registrations are produced at once and the clock runs until every
customer is in PostgreSQL and every document in MongoDB.

    set -a; . .devstack/env; set +a
    .venv/bin/python -m benchmarks.throughput --events 5000 --batch-sizes 1,10,100 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from pathlib import Path

import psycopg
from pymongo import MongoClient

from acme_customer.adapters.topics import ensure_topics
from tests.e2e.conftest import REPO, Stack, Worker, _with_database, as_record, user_registered


def one_run(events: int, batch_size: int, extra_env: dict[str, str] | None = None) -> tuple[float, float]:
    """(seconds until all customers are in PostgreSQL, seconds until all documents are in MongoDB)."""
    name = f"bench_{uuid.uuid4().hex[:8]}"
    admin_url = os.environ["DATABASE_URL"]
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    env = {
        **os.environ,
        "DATABASE_URL": _with_database(admin_url, name),
        "MONGODB_DATABASE": name,
        "BATCH_SIZE": str(batch_size),
        "LOG_LEVEL": "WARNING",
        **(extra_env or {}),
    }
    stack = Stack(env=env, database_url=env["DATABASE_URL"], mongo_database=name)
    log = REPO / ".devstack" / "logs" / "benchmark-worker.log"
    worker = Worker(env=env, log_path=Path(log)).start()
    try:
        worker.wait_ready()
        records = [as_record(user_registered()) for _ in range(events)]
        started = time.monotonic()
        stack.produce(records)
        in_postgres = in_mongo = 0.0
        collection = stack.mongo()
        while not in_mongo:
            if not in_postgres and stack.sql("SELECT COUNT(*) FROM customers")[0][0] >= events:
                in_postgres = time.monotonic() - started
            if in_postgres and collection.estimated_document_count() >= events:
                in_mongo = time.monotonic() - started
            if time.monotonic() - started > 600:
                raise RuntimeError("not done after 600 s")
            time.sleep(0.1)
        return in_postgres, in_mongo
    finally:
        worker.stop()
        MongoClient(os.environ["MONGODB_URI"]).drop_database(name)
        with psycopg.connect(admin_url, autocommit=True) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--batch-sizes", default="1,10,100")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(ensure_topics(os.environ["KAFKA_BOOTSTRAP_SERVERS"]))
    print(f"{args.events} registrations per run, {args.repeat} runs per batch size; medians")
    print("batch_size  events/s to PostgreSQL  events/s to MongoDB  (runs: seconds to PG / to Mongo)")
    for batch_size in (int(size) for size in args.batch_sizes.split(",")):
        runs = [one_run(args.events, batch_size) for _ in range(args.repeat)]
        pg = statistics.median(args.events / run[0] for run in runs)
        mongo = statistics.median(args.events / run[1] for run in runs)
        detail = ", ".join(f"{a:.1f}/{b:.1f}" for a, b in runs)
        print(f"{batch_size:>10}  {pg:>22.0f}  {mongo:>19.0f}  ({detail})", flush=True)


if __name__ == "__main__":
    main()
