"""The header-name patch of aiokafka's record parser (acme_customer/adapters/kafka_records.py).

Record batches are built with aiokafka's own batch builder, as a broker would hand them to the
fetcher, and read through aiokafka's own ``PartitionRecords``. The tripwires fail when an
aiokafka upgrade changes what the patch relies on; re-read the module then (and drop it if the
parser has learnt to read any header name).
"""

from __future__ import annotations

import inspect
from typing import Any

import aiokafka
import pytest
from aiokafka.consumer import fetcher
from aiokafka.record.default_records import DefaultRecordBatch, _DefaultRecordBatchBuilderPy, _DefaultRecordBatchPy
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from acme_customer.adapters import kafka_records
from acme_customer.adapters.kafka_records import PINNED_AIOKAFKA, TolerantMemoryRecords

TP = TopicPartition("identity.user.events", 0)
CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


class RawName(str):
    """A header name whose bytes on the wire are ``raw``: aiokafka's builder asks the name to encode itself."""

    raw: bytes

    def __new__(cls, raw: bytes) -> RawName:
        name = super().__new__(cls, raw.decode("utf-8", errors="replace"))
        name.raw = raw
        return name

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return self.raw


Row = tuple[bytes | None, bytes | None, list[tuple[bytes, bytes | None]]]  # key, value, headers


def _batch(base_offset: int, rows: list[Row], codec: str = "none") -> bytes:
    builder = _DefaultRecordBatchBuilderPy(
        magic=2, compression_type=CODECS[codec], is_transactional=0, producer_id=-1, producer_epoch=-1,
        base_sequence=-1, batch_size=1 << 20,
    )  # fmt: skip
    for delta, (key, value, headers) in enumerate(rows):
        builder.append(delta, 1_700_000_000_000, key, value, [(RawName(name), v) for name, v in headers])
    data = builder.build()
    data[0:8] = base_offset.to_bytes(8, "big")  # the broker writes the batch's offset
    return bytes(data)


def _fetched(data: bytes, records: Any = TolerantMemoryRecords) -> list[Any]:
    """The consumer records aiokafka's fetcher makes of ``data`` (CRCs checked, as Faust asks)."""
    return list(fetcher.PartitionRecords(TP, records(data), None, 0, None, None, True, "read_uncommitted"))


BAD = (b"bad\xffname", b"v")


def test_aiokafka_is_the_version_the_patch_was_checked_against() -> None:
    assert aiokafka.__version__ == PINNED_AIOKAFKA, "aiokafka changed: re-check kafka_records.py, then the pin"


def test_the_fetcher_reads_through_the_tolerant_records_once_installed() -> None:
    kafka_records.install()
    assert fetcher.MemoryRecords is TolerantMemoryRecords


def test_aiokafka_alone_still_cannot_read_a_header_name_that_is_not_utf8() -> None:
    """The bug the patch carries a fix for; when this fails, aiokafka fixed it: drop the patch."""
    with pytest.raises(UnicodeDecodeError):
        _fetched(_batch(0, [(b"k", b"v", [BAD])]), records=MemoryRecords)


def test_what_the_patch_relies_on_in_aiokafka_is_unchanged() -> None:
    unpack = inspect.getsource(fetcher.PartitionRecords._unpack_records)
    # records already handed out are skipped by offset: a batch read again yields nothing twice
    assert "if record.offset < self.next_fetch_offset:" in unpack
    assert "for record in next_batch:" in unpack
    # the pure-Python parser decodes header names from slices of its buffer, and only those
    read = inspect.getsource(_DefaultRecordBatchPy._read_msg)
    assert 'h_key = buffer[pos : pos + h_key_len].decode("utf-8")' in read
    assert read.count(".decode(") == 1
    assert "self._buffer = bytearray(uncompressed)" in inspect.getsource(_DefaultRecordBatchPy._maybe_uncompress)
    assert DefaultRecordBatch is not _DefaultRecordBatchPy, "the C extension is what the fast path uses"


@pytest.mark.parametrize("codec", CODECS)
def test_a_bad_header_name_mid_batch_yields_every_record_once_in_order(codec: str) -> None:
    rows: list[Row] = [(b"k0", b"before", [(b"ok", b"1")]), (b"k1", b"odd", [BAD, (b"ok", None)]), (None, b"after", [])]
    data = _batch(40, rows, codec) + _batch(43, [(b"k3", b"next batch", [(b"x", b"y")])], codec)

    records = _fetched(data)

    assert [(r.offset, r.key, r.value) for r in records] == [
        (40, b"k0", b"before"), (41, b"k1", b"odd"), (42, None, b"after"), (43, b"k3", b"next batch"),
    ]  # fmt: skip
    assert records[1].headers == (("bad\ufffdname", b"v"), ("ok", None))
    assert records[0].headers == (("ok", b"1"),)


header_names = st.binary(max_size=6) | st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"traceparent"])
rows_strategy = st.lists(
    st.tuples(
        st.none() | st.binary(max_size=4),
        st.none() | st.binary(max_size=8),
        st.lists(st.tuples(header_names, st.none() | st.binary(max_size=4)), max_size=3),
    ),
    min_size=1,
    max_size=5,
)


@given(batches=st.lists(rows_strategy, min_size=1, max_size=3), codec=st.sampled_from(sorted(CODECS)))
def test_any_header_names_reach_the_consumer_as_text_with_keys_values_and_offsets_intact(
    batches: list[list[Row]], codec: str
) -> None:
    data, expected, offset = b"", [], 0
    for rows in batches:
        data += _batch(offset, rows, codec)
        for key, value, headers in rows:
            names = [(name.decode("utf-8", errors="replace"), v) for name, v in headers]
            expected.append((offset, key, value, tuple(names)))
            offset += 1

    assert [(r.offset, r.key, r.value, r.headers) for r in _fetched(data)] == expected
