"""What compressing customer.events costs: each Kafka codec on a batch of real CustomerRegistered values.

Run: ``.venv/bin/python benchmarks/codec_cost.py`` (no stack needed). It builds 100
CustomerRegistered events with the domain code, encodes them as JSON (what EVENT_FORMAT=json
writes; Avro is smaller and compresses less), and times aiokafka's own codec functions on the
batch, as the producer compresses a record batch. Prints the median of 200 rounds per codec.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from aiokafka import codec

from acme_customer.adapters.codec import encode_json
from acme_customer.domain.customer import register_customer
from acme_customer.domain.customer_number import CustomerNumber
from acme_customer.domain.events import UserRegistered

ROUNDS = 200


def _batch() -> bytes:
    moment = datetime(2026, 1, 2, 10, 30, tzinfo=UTC)
    values = []
    for n in range(1, 101):
        user = UserRegistered(
            event_id=uuid.uuid4(),
            timestamp=moment,
            correlation_id=uuid.uuid4(),
            causation_id=None,
            user_id=uuid.uuid4(),
            email=f"customer{n}@example.com",
            first_name=f"Jane{n}",
            last_name="Doe",
            marketing_opt_in=n % 2 == 0,
            registered_at=moment,
        )
        _, event = register_customer(user, CustomerNumber("202601", n), moment)
        values.append(encode_json(event.to_dict()))
    return b"".join(values)


def _median_ms(compress: Callable[[bytes], bytes], payload: bytes) -> float:
    timings = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        compress(payload)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings) * 1000


def main() -> None:
    payload = _batch()
    codecs: dict[str, Callable[[bytes], bytes]] = {
        "gzip": codec.gzip_encode,
        "snappy": codec.snappy_encode,
        "lz4": codec.lz4_encode,
        "zstd": codec.zstd_encode,
    }
    print(f"batch: 100 CustomerRegistered, {len(payload):,} bytes of JSON")
    print(f"{'codec':8} {'bytes':>8} {'ratio':>6} {'ms/batch':>9} {'µs/event':>9}")
    for name, compress in codecs.items():
        size = len(compress(payload))
        took = _median_ms(compress, payload)
        print(f"{name:8} {size:>8,} {len(payload) / size:>6.2f} {took:>9.3f} {took * 10:>9.1f}")


if __name__ == "__main__":
    main()
