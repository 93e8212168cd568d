"""Throughput of the whole pipeline by batch size: UserRegistered in, customers and documents out.

Each run is ``acme-customer bench``'s pipeline run (``benchmarks/pipeline.py``): fresh
PostgreSQL and MongoDB databases, a worker with the given BATCH_SIZE, N registrations (Avro,
1 % duplicates, two months) produced at once; the clock runs until every customer is
committed and published, then until every document is in MongoDB.

    set -a; . .devstack/env; set +a
    .venv/bin/python -m benchmarks.throughput --events 5000 --batch-sizes 1,10,100 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics

from acme_customer.adapters.topics import ensure_topics
from benchmarks.pipeline import run_burst
from benchmarks.workload import burst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--batch-sizes", default="1,10,100")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(ensure_topics(os.environ["KAFKA_BOOTSTRAP_SERVERS"]))
    records = burst(args.events, os.environ["SCHEMA_REGISTRY_URL"])
    print(f"{args.events} registrations per run, {args.repeat} runs per batch size; medians; load {os.getloadavg()}")
    print("batch_size  events/s to PostgreSQL  events/s to MongoDB  (runs: seconds to PG / to Mongo)")
    for batch_size in (int(size) for size in args.batch_sizes.split(",")):
        runs = [run_burst(records, batch_size) for _ in range(args.repeat)]
        pg = statistics.median(run.events_per_s for run in runs)
        mongo = statistics.median(run.projected_per_s for run in runs)
        detail = ", ".join(f"{run.committed_s:.1f}/{run.projected_s:.1f}" for run in runs)
        print(f"{batch_size:>10}  {pg:>22.0f}  {mongo:>19.0f}  ({detail})", flush=True)


if __name__ == "__main__":
    main()
