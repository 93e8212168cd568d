"""aiokafka's record parser made to read header names that are not UTF-8: a patch we carry.

Kafka's protocol calls a header name a string, but brokers check nothing and librdkafka sends
any bytes (``kcat -H $'bad\\xffname=v'``). aiokafka 0.14.0 decodes header names strictly in both
of its record parsers (the C extension raises ``UnicodeDecodeError``, the pure-Python one a
``CorruptRecordException`` from it), inside the fetcher, where no caller can catch it: the
consumer's fetch fails, the worker exits, and every restart meets the same record.

The patch replaces the fetcher's ``MemoryRecords`` with one whose batches are still aiokafka's C
batches (the fast path, unchanged for every ordinary record). Only a batch whose iteration fails
on a header name is read again, by aiokafka's pure-Python parser with header names decoded with
``errors="replace"``; the records the C parser had already delivered from it are dropped by
aiokafka's own ``PartitionRecords`` offset check. The record then reaches our edge as data, with
U+FFFD in place of the bytes that were not UTF-8, and is processed or dead-lettered like any other.
``docs/reliability.md`` has the upstream report's text and the measured cost;
``tests/unit/test_kafka_records.py`` fails on an aiokafka upgrade that changes what this relies on.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, SupportsIndex

import aiokafka
from aiokafka.consumer import fetcher
from aiokafka.errors import CorruptRecordException
from aiokafka.record import memory_records
from aiokafka.record.default_records import _DefaultRecordBatchPy

PINNED_AIOKAFKA = "0.14.0"
MAGIC_V2 = 2  # record batches with headers; v0 and v1 message sets have none


class _LenientText(bytearray):
    """A header name's bytes, whose ``decode`` replaces what is not valid instead of raising."""

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return bytearray.decode(self, encoding, "replace")


class _LenientBuffer(bytearray):
    """A batch's bytes whose slices decode leniently (the Python parser decodes only header names)."""

    def __getitem__(self, index: SupportsIndex | slice) -> Any:
        item = bytearray.__getitem__(self, index)
        return _LenientText(item) if isinstance(index, slice) else item


class _LenientBatch(_DefaultRecordBatchPy):  # type: ignore[misc]  # aiokafka's modules are untyped here
    """aiokafka's pure-Python batch reader over a lenient buffer."""

    _buffer: bytearray

    def _maybe_uncompress(self) -> None:
        super()._maybe_uncompress()  # may replace the buffer with the uncompressed records
        if not isinstance(self._buffer, _LenientBuffer):
            self._buffer = _LenientBuffer(self._buffer)


def _header_name_undecodable(error: BaseException) -> bool:
    return isinstance(error, UnicodeDecodeError) or isinstance(error.__cause__, UnicodeDecodeError)


class _TolerantBatch:
    """aiokafka's C batch, read again leniently when one of its header names is not UTF-8."""

    __slots__ = ("_batch", "_data")

    def __init__(self, batch: Any, data: memoryview) -> None:
        self._batch = batch
        self._data = data

    def __getattr__(self, name: str) -> Any:  # the batch's header fields and validate_crc
        return getattr(self._batch, name)

    def __iter__(self) -> Iterator[Any]:
        return self._records()

    def __next__(self) -> Any:  # the fetcher reads a control batch's marker with next()
        return next(self._batch)

    def _records(self) -> Iterator[Any]:
        try:
            yield from self._batch
        except (UnicodeDecodeError, CorruptRecordException) as error:
            if not _header_name_undecodable(error):
                raise
            # from the batch's first record: the fetcher skips offsets it has already handed out
            yield from _LenientBatch(self._data)


class TolerantMemoryRecords:
    """The fetched bytes of one partition, as batches that survive any header name."""

    def __init__(self, data: bytes) -> None:
        self._records = memory_records._MemoryRecordsPy(data)

    def size_in_bytes(self) -> int:
        return int(self._records.size_in_bytes())

    def has_next(self) -> bool:
        return bool(self._records.has_next())

    def next_batch(self) -> Any:
        data = self._records._next_slice  # the bytes next_batch is about to wrap
        batch = self._records.next_batch()
        if batch is None or data is None or batch.magic < MAGIC_V2:
            return batch
        return _TolerantBatch(batch, data)


def install() -> None:
    """Have every aiokafka consumer in this process read batches through ``TolerantMemoryRecords``."""
    if aiokafka.__version__ != PINNED_AIOKAFKA:  # pragma: no cover - the tripwire test says why
        raise RuntimeError(f"acme_customer.adapters.kafka_records patches aiokafka {PINNED_AIOKAFKA} only")
    fetcher.MemoryRecords = TolerantMemoryRecords


install()
