"""Faust's aiokafka transport, with the worker's consumer reading committed records only.

The story's consumer configuration says ``isolation.level: read_committed``: a record of an
aborted producer transaction must never become a customer, and a record of an open one waits
until its transaction ends. faust-streaming 0.15.3 has no setting for it: its worker consumer
reads ``read_uncommitted`` unless ``processing_guarantee`` is ``exactly_once``
(``AIOKafkaConsumerThread._create_worker_consumer``), which would also move Faust's commits into
Kafka transactions that this service does not use. So this driver sets the isolation level on
the aiokafka consumer Faust builds, before it starts. With it, ``Consumer.highwaters`` (the lag
reader's end offsets) reports the last stable offset, the end of what the worker can read.

It also reads every batch through the parser that survives any header name
(``adapters/kafka_records.py``). It is registered under the ``faust.transports`` entry point as
``acme`` (setup.cfg), Faust's documented way to add a transport, and selected by the broker URLs'
scheme. ``tests/unit/test_kafka_transport.py`` fails on an upgrade that changes what this relies on.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka

import acme_customer.adapters.kafka_records  # noqa: F401  # installs the header-name patch
from acme_customer.adapters.kafka import READ_COMMITTED

SCHEME = "acme"


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._isolation_level = READ_COMMITTED  # read by AIOKafkaConsumer.start(), which comes later
        return consumer


class Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    Consumer = Consumer
