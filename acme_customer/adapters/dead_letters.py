"""The dead-letter queue as operators see it: list what is there, replay chosen records.

A replay republishes the original key and bytes to the original topic (with an
``x-replayed-from`` header) and records the DLQ position in ``dlq_replays`` in PostgreSQL, so
the same record is not replayed twice by accident. Replaying is safe in any case: the
service is idempotent, so a record whose customer exists creates nothing new.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from aiokafka import AIOKafkaProducer

from acme_customer.adapters.kafka import OUTPUT_COMPRESSION, USER_EVENTS, USER_EVENTS_DLQ
from acme_customer.adapters.kafka_security import client_options
from acme_customer.adapters.postgres import connection_failed
from acme_customer.adapters.topics import PLAINTEXT, reaching_kafka, read_topic
from acme_customer.config import KafkaSecurity


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    timestamp: datetime
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]  # as text, for reading the x- headers
    raw_headers: tuple[tuple[str, bytes | None], ...] = ()  # as they came: null and binary values kept

    @property
    def error_class(self) -> str:
        return self.headers.get("x-error-class", "?")

    @property
    def error_message(self) -> str:
        return self.headers.get("x-error-message", "")

    @property
    def original_topic(self) -> str:
        return self.headers.get("x-original-topic", USER_EVENTS)


async def read_dead_letters(
    bootstrap: str,
    since: datetime | None = None,
    error_class: str | None = None,
    topic: str = USER_EVENTS_DLQ,
    *,
    security: KafkaSecurity = PLAINTEXT,
) -> list[DeadLetter]:
    """Every record on the DLQ (from ``since``, of ``error_class``), in partition and offset order."""
    since_ms = int(since.timestamp() * 1000) if since is not None else None
    records = await read_topic(bootstrap, topic, since=since_ms, timeout=120, security=security)
    letters = [
        DeadLetter(
            partition=record.partition,
            offset=record.offset,
            timestamp=datetime.fromtimestamp(record.timestamp / 1000, UTC),
            key=record.key,
            value=record.value,
            headers={name: (value or b"").decode(errors="replace") for name, value in record.headers},
            raw_headers=tuple(record.headers),
        )
        for record in records
    ]
    chosen = [letter for letter in letters if error_class is None or letter.error_class == error_class]
    return sorted(chosen, key=lambda letter: (letter.partition, letter.offset))


def replayed_positions(database_url: str, topic: str = USER_EVENTS_DLQ) -> set[tuple[int, int]]:
    try:
        with psycopg.connect(database_url) as connection:
            rows = connection.execute(
                "SELECT dlq_partition, dlq_offset FROM dlq_replays WHERE dlq_topic = %s", (topic,)
            ).fetchall()
    except psycopg.Error as error:
        raise connection_failed(error) from error
    return {(int(partition), int(offset)) for partition, offset in rows}


async def replay(
    bootstrap: str,
    database_url: str,
    letters: list[DeadLetter],
    topic: str = USER_EVENTS_DLQ,
    report: Callable[[DeadLetter], Awaitable[None] | None] | None = None,
    *,
    security: KafkaSecurity = PLAINTEXT,
) -> int:
    """Republish ``letters`` to their original topic and record each; return how many were sent."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        max_request_size=5 * 1024 * 1024,
        compression_type=OUTPUT_COMPRESSION,
        **client_options(security),
    )
    async with reaching_kafka(bootstrap, security):
        await producer.start()
    try:
        async with reaching_kafka(bootstrap, security):
            return await _replay(producer, database_url, letters, topic, report)
    except psycopg.Error as error:
        raise connection_failed(error) from error
    finally:
        await producer.stop()


async def _replay(
    producer: AIOKafkaProducer,
    database_url: str,
    letters: list[DeadLetter],
    topic: str,
    report: Callable[[DeadLetter], Awaitable[None] | None] | None,
) -> int:
    sent = 0
    with psycopg.connect(database_url, autocommit=True) as connection:
        for letter in letters:
            # the original's own headers, byte for byte (null values included), without our x- ones
            headers: list[tuple[str, bytes | None]] = [
                (name, value) for name, value in letter.raw_headers if not name.startswith("x-")
            ]
            headers.append(("x-replayed-from", f"{topic}/{letter.partition}/{letter.offset}".encode()))
            # aiokafka refuses a record with neither key nor value (see KafkaPublisher.dead_letter)
            key = b"" if letter.key is None and letter.value is None else letter.key
            await producer.send_and_wait(letter.original_topic, letter.value, key=key, headers=headers)
            # recorded after Kafka has the record: a crash in between replays it once more, harmlessly
            connection.execute(
                "INSERT INTO dlq_replays (dlq_topic, dlq_partition, dlq_offset, error_class)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (topic, letter.partition, letter.offset, letter.error_class),
            )
            sent += 1
            if report is not None:
                outcome = report(letter)
                if outcome is not None:
                    await outcome
    return sent


def user_id_of(decoded: Any) -> str:
    """The payload's userId when the record could be read, for listing (no other personal data)."""
    if isinstance(decoded, dict):
        payload = decoded.get("payload")
        if isinstance(payload, dict) and isinstance(payload.get("userId"), str):
            return str(payload["userId"])[:36]
    return "-"
