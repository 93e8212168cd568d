"""The processed-eventId cache over a real Faust table (issue 12): writes go to the local store and
to the changelog partition of the record they belong to, without a current event."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import faust
import pytest

from acme_customer.adapters.processed_table import TableCache, changelog_configs


@pytest.fixture
def table() -> Iterator[Any]:
    app = faust.App(f"t-{uuid.uuid4().hex[:8]}", store="memory://", broker="kafka://127.0.0.1:1")
    yield app.Table("seen", partitions=12, key_type=str, value_type=float)


def _changelog(table: Any) -> list[Any]:
    """The changelog records queued in the app's producer buffer (the producer is not started)."""
    pending = table.app.producer.buffer.pending
    return [pending.get_nowait().message for _ in range(pending.qsize())]


def test_faust_refuses_a_table_write_outside_a_stream_which_is_why_the_cache_names_the_partition(
    table: Any,
) -> None:
    # faust-streaming #497/#300: no current event inside take()/noack_take() batches
    with pytest.raises(TypeError, match="outside of stream iteration"):
        table["some-event"] = 1.0


async def test_an_entry_is_found_and_sent_to_the_changelog_partition_of_its_record(table: Any) -> None:
    cache = TableCache(table, retention_s=3600, clock=lambda: 1000.0)
    event_id, other = uuid.uuid4(), uuid.uuid4()

    cache.add(event_id, 7)

    assert event_id in cache and other not in cache and len(cache) == 1
    (record,) = _changelog(table)
    assert (record.channel.get_topic_name(), record.partition) == (f"{table.app.conf.id}-seen-changelog", 7)
    assert (record.key, record.value) == (f'"{event_id}"'.encode(), b"1000.0")


async def test_entries_past_the_retention_are_dropped_and_newer_ones_kept(table: Any) -> None:
    now = [1000.0]
    cache = TableCache(table, retention_s=100, clock=lambda: now[0])
    old, recent = uuid.uuid4(), uuid.uuid4()
    cache.add(old, 1)
    now[0] = 1060.0
    cache.add(recent, 2)

    now[0] = 1120.0  # old is 120 s old, recent 60 s
    assert cache.expire() == 1

    assert old not in cache and recent in cache


def test_the_changelog_is_compacted_and_deletes_what_is_older_than_the_retention() -> None:
    assert changelog_configs(7 * 86400) == {"cleanup.policy": "compact,delete", "retention.ms": "604800000"}
