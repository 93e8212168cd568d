"""The cost of the header-name patch (adapters/kafka_records.py) on the fetcher's path.

Batches of 100 ordinary records (JSON-sized values, two headers each), as a broker hands them
to aiokafka's fetcher, are read through ``PartitionRecords`` with aiokafka's own C
``MemoryRecords`` and with ``TolerantMemoryRecords``; the median of 7 runs of each, in µs per
record. ``python -m benchmarks.header_patch_cost``
"""

from __future__ import annotations

import statistics
import time

from aiokafka.consumer import fetcher
from aiokafka.record.default_records import _DefaultRecordBatchBuilderPy
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import TopicPartition

from acme_customer.adapters.kafka_records import TolerantMemoryRecords

BATCHES, RECORDS = 200, 100
TP = TopicPartition("identity.user.events", 0)


def _data() -> bytes:
    data = b""
    for batch in range(BATCHES):
        builder = _DefaultRecordBatchBuilderPy(2, 4, 0, -1, -1, -1, 1 << 22)  # zstd, as producers send
        for delta in range(RECORDS):
            value = b'{"eventId":"%d","payload":{"email":"u@example.com"}}' % delta + b" " * 300
            builder.append(delta, 1_700_000_000_000, b"k%d" % delta, value, [("traceparent", b"00-" * 18), ("x", None)])
        built = builder.build()
        built[0:8] = (batch * RECORDS).to_bytes(8, "big")
        data += bytes(built)
    return data


def _per_record_us(records: type, data: bytes) -> float:
    started = time.perf_counter()
    count = sum(1 for _ in fetcher.PartitionRecords(TP, records(data), None, 0, None, None, True, "read_uncommitted"))
    assert count == BATCHES * RECORDS
    return (time.perf_counter() - started) / count * 1e6


def main() -> None:
    data = _data()
    runs = {name: [] for name in ("aiokafka", "patched")}  # type: dict[str, list[float]]
    for _ in range(7):  # alternating, so that a noisy moment hits both
        runs["aiokafka"].append(_per_record_us(MemoryRecords, data))
        runs["patched"].append(_per_record_us(TolerantMemoryRecords, data))
    medians = {name: statistics.median(values) for name, values in runs.items()}
    print(
        f"aiokafka C parser: {medians['aiokafka']:.2f} µs/record; patched: {medians['patched']:.2f} µs/record;"
        f" ratio {medians['patched'] / medians['aiokafka']:.2f}"
    )


if __name__ == "__main__":
    main()
