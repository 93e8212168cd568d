"""A Kafka producer for operator commands, which run without Faust (``reconcile``).

``KafkaPublisher`` expects Faust's producer; ``AiokafkaProducer`` gives an aiokafka one that
shape, and ``OnDemandPublisher`` starts it only when there is something to publish, so a
command with nothing to publish does not need Kafka at all.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any
from uuid import UUID

from aiokafka import AIOKafkaProducer
from opentelemetry.context import Context

from acme_customer.adapters.kafka import OUTPUT_COMPRESSION, KafkaPublisher, Producer
from acme_customer.adapters.kafka_security import client_options
from acme_customer.adapters.topics import PLAINTEXT, reaching_kafka
from acme_customer.config import KafkaSecurity
from acme_customer.domain.events import CustomerRegistered
from acme_customer.service_layer.ports import EventPublisher


class AiokafkaProducer:
    """An aiokafka producer in the shape KafkaPublisher expects of Faust's."""

    def __init__(self, producer: AIOKafkaProducer):
        self.producer = producer

    async def send(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int | None, timestamp: Any, headers: Any
    ) -> Any:
        return await self.producer.send(topic, value, key=key, partition=partition, headers=headers)


class OnDemandPublisher(EventPublisher):
    """A KafkaPublisher over an aiokafka producer started at the first publish."""

    def __init__(
        self,
        bootstrap_servers: str,
        make_publisher: Callable[[Producer], Awaitable[KafkaPublisher]],
        security: KafkaSecurity = PLAINTEXT,
    ):
        self.bootstrap_servers = bootstrap_servers
        self.security = security
        self.make_publisher = make_publisher  # the codec wiring, from the composition root
        self._producer: AIOKafkaProducer | None = None
        self._publisher: KafkaPublisher | None = None

    async def publish_customer_registered(
        self, events: Sequence[CustomerRegistered], trace_of: Mapping[UUID, Context] | None = None
    ) -> None:
        if not events:
            return
        if self._publisher is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap_servers,
                acks="all",
                compression_type=OUTPUT_COMPRESSION,
                **client_options(self.security),
            )
            async with reaching_kafka(self.bootstrap_servers, self.security):
                await producer.start()
            self._producer = producer
            self._publisher = await self.make_publisher(AiokafkaProducer(producer))
        await self._publisher.publish_customer_registered(events, trace_of)

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
