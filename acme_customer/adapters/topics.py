"""The contract's topics: created when missing (local stack and tests; in production the platform
owns them), described, and read back without a consumer group (operators' tools, the demo, tests)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError

import acme_customer.adapters.kafka_records  # noqa: F401  # installs the header-name patch
from acme_customer.adapters.kafka import (
    CUSTOMER_EVENTS,
    CUSTOMER_EVENTS_DLQ,
    READ_COMMITTED,
    USER_EVENTS,
    USER_EVENTS_DLQ,
)
from acme_customer.adapters.kafka_security import client_options, refusal
from acme_customer.adapters.processed_table import CHANGELOG_TOPIC
from acme_customer.config import KafkaSecurity
from acme_customer.errors import AcmeCustomerError, BrokerUnavailable

PLAINTEXT = KafkaSecurity()


@asynccontextmanager
async def reaching_kafka(bootstrap_servers: str, security: KafkaSecurity = PLAINTEXT) -> AsyncIterator[None]:
    """aiokafka's errors inside as ours: BrokerUnavailable naming the servers (one line for operators),
    and what the brokers refused when it was the TLS or SASL handshake."""
    try:
        yield
    except KafkaError as error:
        refused = await refusal(bootstrap_servers, security) if isinstance(error, KafkaConnectionError) else None
        if refused is not None:
            raise BrokerUnavailable(f"Kafka at {bootstrap_servers} {refused}") from error
        raise BrokerUnavailable(f"Kafka at {bootstrap_servers} unavailable: {type(error).__name__}") from error


async def missing_topics(bootstrap_servers: str, security: KafkaSecurity) -> list[str]:
    """The contract's topics the brokers do not have (``config check --connect``); BrokerUnavailable if none answers."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **client_options(security))
    async with reaching_kafka(bootstrap_servers, security):
        await admin.start()
        try:
            existing = set(await admin.list_topics())
        finally:
            await admin.close()
    return [
        topic for topic in (USER_EVENTS, CUSTOMER_EVENTS, USER_EVENTS_DLQ, CUSTOMER_EVENTS_DLQ) if topic not in existing
    ]


DEFAULT_PARTITIONS = 12


async def ensure_topics(
    bootstrap_servers: str,
    partitions: int = DEFAULT_PARTITIONS,
    dlq_partitions: int = 1,
    *,
    security: KafkaSecurity = PLAINTEXT,
) -> list[str]:
    """Create the missing topics of the contract; return the names created."""
    wanted = {
        USER_EVENTS: partitions,
        CUSTOMER_EVENTS: partitions,
        USER_EVENTS_DLQ: dlq_partitions,
        CUSTOMER_EVENTS_DLQ: dlq_partitions,
    }
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **client_options(security))
    async with reaching_kafka(bootstrap_servers, security):
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            missing = [
                # the DLQ takes whatever the input topic took, up to the input's own size limit
                NewTopic(name, count, 1, topic_configs={"max.message.bytes": str(4 * 1024 * 1024)})
                for name, count in wanted.items()
                if name not in existing
            ]
            if missing:
                await admin.create_topics(missing)
            return [topic.name for topic in missing]
        finally:
            await admin.close()


class TopicsRefused(AcmeCustomerError):
    """A topic has more partitions than asked for: Kafka cannot take partitions away."""


async def grow_topics(bootstrap_servers: str, partitions: int, *, security: KafkaSecurity = PLAINTEXT) -> list[str]:
    """Grow the input and output topics, and the processed-eventId table's changelog when it exists,
    to ``partitions``; return the names grown.

    They scale together: the changelog one for one with the input, the output so that the projector
    scales too. A topic with more partitions raises ``TopicsRefused`` before anything changes.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **client_options(security))
    async with reaching_kafka(bootstrap_servers, security):
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            topics = [topic for topic in (USER_EVENTS, CUSTOMER_EVENTS, CHANGELOG_TOPIC) if topic in existing]
            counts = {d["topic"]: len(d["partitions"]) for d in await admin.describe_topics(topics)}
            larger = sorted(f"{topic} has {count}" for topic, count in counts.items() if count > partitions)
            if larger:
                raise TopicsRefused(f"cannot shrink to {partitions} partitions ({'; '.join(larger)}): nothing changed")
            smaller = {topic: NewPartitions(partitions) for topic, count in counts.items() if count < partitions}
            if smaller:
                await admin.create_partitions(smaller)
            return sorted(smaller)
        finally:
            await admin.close()


async def topic_partitions(
    bootstrap_servers: str, topic: str, *, security: KafkaSecurity = PLAINTEXT
) -> list[TopicPartition]:
    """The partitions of ``topic``, from the broker (a consumer without a subscription knows none)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **client_options(security))
    async with reaching_kafka(bootstrap_servers, security):
        await admin.start()
        try:
            (description,) = await admin.describe_topics([topic])
        finally:
            await admin.close()
    if description.get("error_code"):
        raise AcmeCustomerError(f"topic {topic} cannot be described (error {description['error_code']})")
    return [TopicPartition(topic, partition["partition"]) for partition in description["partitions"]]


async def end_offsets(bootstrap_servers: str, topic: str, *, security: KafkaSecurity = PLAINTEXT) -> dict[int, int]:
    """The end offset of each partition of ``topic`` (where the next record will go)."""
    partitions = await topic_partitions(bootstrap_servers, topic, security=security)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        isolation_level=READ_COMMITTED,  # the last stable offset: the end of what a reader of ours sees
        **client_options(security),
    )
    await consumer.start()
    try:
        return {tp.partition: offset for tp, offset in (await consumer.end_offsets(partitions)).items()}
    finally:
        await consumer.stop()


async def read_topic(
    bootstrap_servers: str,
    topic: str,
    since: Mapping[int, int] | int | None = None,
    until: Callable[[list[Any]], bool] | None = None,
    timeout: float = 30.0,
    *,
    security: KafkaSecurity = PLAINTEXT,
) -> list[Any]:
    """The records of ``topic`` (aiokafka ``ConsumerRecord``s), read without a consumer group.

    ``since``: partition -> offset (only those partitions are read), a timestamp in epoch
    milliseconds, or None for the beginning. Without ``until``, reads to the end offsets the
    topic had when called and raises AcmeCustomerError if it cannot within ``timeout``; with
    ``until``, reads until ``until(records)`` holds and returns what it has at ``timeout``.
    """
    if isinstance(since, Mapping):
        partitions = [TopicPartition(topic, partition) for partition in sorted(since)]
    else:
        partitions = await topic_partitions(bootstrap_servers, topic, security=security)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        isolation_level=READ_COMMITTED,
        **client_options(security),
    )
    async with reaching_kafka(bootstrap_servers, security):
        await consumer.start()
        return await _read(consumer, topic, partitions, since, until, timeout)


async def _read(
    consumer: AIOKafkaConsumer,
    topic: str,
    partitions: list[TopicPartition],
    since: Mapping[int, int] | int | None,
    until: Callable[[list[Any]], bool] | None,
    timeout: float,
) -> list[Any]:
    found: list[Any] = []
    try:
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        for tp, start in (await _starts(consumer, partitions, since, ends)).items():
            consumer.seek(tp, start)
        deadline = asyncio.get_running_loop().time() + timeout
        while not (until(found) if until is not None else await _at_ends(consumer, ends)):
            if asyncio.get_running_loop().time() > deadline:
                if until is not None:
                    return found
                raise AcmeCustomerError(f"reading {topic} did not reach its end offsets within {timeout:.0f} s")
            for records in (await consumer.getmany(*partitions, timeout_ms=200)).values():
                found.extend(record for record in records if until is not None or record.offset < ends[_tp_of(record)])
    finally:
        await consumer.stop()
    return found


def _tp_of(record: Any) -> TopicPartition:
    return TopicPartition(record.topic, record.partition)


async def _starts(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition], since: Mapping[int, int] | int | None, ends: Any
) -> dict[TopicPartition, int]:
    if isinstance(since, Mapping):
        return {tp: since[tp.partition] for tp in partitions}
    if since is None:
        return dict(await consumer.beginning_offsets(partitions))
    by_time = await consumer.offsets_for_times({tp: since for tp in partitions})
    return {tp: (by_time[tp].offset if by_time.get(tp) else ends[tp]) for tp in partitions}


async def _at_ends(consumer: AIOKafkaConsumer, ends: Mapping[TopicPartition, int]) -> bool:
    return all([await consumer.position(tp) >= end for tp, end in ends.items()])
