"""The worker's Kafka transport (acme_customer/entrypoints/kafka_transport.py) and its tripwires.

The aiokafka consumer Faust builds is inspected before it starts (nothing connects). The
tripwires fail when a faust-streaming upgrade changes what the driver relies on: re-read it then.
"""

from __future__ import annotations

import inspect
import uuid
from typing import Any

import faust
from faust.transport import by_url
from faust.transport.drivers import aiokafka as faust_aiokafka

from acme_customer.adapters.kafka import METADATA_MAX_AGE_MS, READ_COMMITTED
from acme_customer.entrypoints import kafka_transport


def _worker_consumer(broker: str) -> Any:
    app = faust.App(f"t-{uuid.uuid4().hex[:8]}", broker=broker, consumer_metadata_max_age_ms=METADATA_MAX_AGE_MS)
    thread = app.consumer._thread
    return thread._create_worker_consumer(app.transport)


def test_the_acme_scheme_names_this_driver() -> None:
    assert by_url(f"{kafka_transport.SCHEME}://127.0.0.1:9092") is kafka_transport.Transport


async def test_the_worker_consumer_reads_committed_records_only() -> None:
    consumer = _worker_consumer(f"{kafka_transport.SCHEME}://127.0.0.1:1")
    assert consumer._isolation_level == READ_COMMITTED


async def test_the_worker_consumer_refreshes_its_metadata_every_ten_seconds() -> None:
    consumer = _worker_consumer(f"{kafka_transport.SCHEME}://127.0.0.1:1")
    assert consumer._client._metadata_max_age_ms == METADATA_MAX_AGE_MS == 10_000


async def test_faust_alone_still_reads_uncommitted_without_exactly_once() -> None:
    """Why the driver exists; when this fails, faust has a setting for it: use that instead."""
    consumer = _worker_consumer("kafka://127.0.0.1:1")
    assert consumer._isolation_level == "read_uncommitted"


def test_what_the_driver_relies_on_in_faust_is_unchanged() -> None:
    create = inspect.getsource(faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer)
    assert "isolation_level=isolation_level" in create
    assert "return aiokafka.AIOKafkaConsumer(" in create  # built, not started: start() reads the level
    assert "AIOKafkaConsumerThread(self" in inspect.getsource(faust_aiokafka.Consumer._new_consumer_thread)
    start = inspect.getsource(faust_aiokafka.aiokafka.AIOKafkaConsumer.start)
    assert "isolation_level=self._isolation_level" in start
