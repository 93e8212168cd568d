"""What the benchmark sends: realistic UserRegistered events, Avro-encoded as the identity service would.

A burst holds ``count`` deliveries: distinct registrations over two months, of which 1 % are
delivered twice (the same record again, as after a producer retry), so ``count - count // 100``
customers result.
"""

from __future__ import annotations

import asyncio
import random
import unicodedata
from dataclasses import dataclass
from typing import Any

from schema_registry.client import AsyncSchemaRegistryClient

from acme_customer.adapters.codec import AVRO, TopicCodec
from acme_customer.adapters.kafka import USER_EVENTS
from acme_customer.adapters.schemas import USER_REGISTERED
from tests.e2e.conftest import user_registered

FIRST_NAMES = ("Jane", "John", "Amélie", "Søren", "Priya", "Chen", "Fatima", "Mateo", "Olga", "Kwame", "Zoë", "Liam")
LAST_NAMES = ("Doe", "Müller", "García", "O'Brien", "Nakamura", "Kowalski", "Nguyen", "Okafor", "Rossi", "Smith")
MONTHS = ("2026-01", "2026-02")  # the burst spans two months: two counter rows
DUPLICATE_SHARE = 0.01


@dataclass(frozen=True)
class Burst:
    """The deliveries of a burst (key, Avro value) and how many customers they make."""

    records: list[tuple[bytes | None, bytes]]
    events: list[dict[str, Any]]  # the documents, duplicates included, in delivery order
    unique: int


def registration(rng: random.Random, index: int) -> dict[str, Any]:
    """One realistic UserRegistered: varied names (some non-ASCII), opt-in for a third, one of two months."""
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    day, second = rng.randint(1, 28), rng.randint(0, 86_399)
    registered_at = f"{rng.choice(MONTHS)}-{day:02d}T{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}Z"
    return user_registered(
        registered_at=registered_at,
        marketing_opt_in=rng.random() < 1 / 3,
        first_name=first,
        last_name=last,
        email=f"{_ascii(first)}.{_ascii(last)}.{index}@example.com",
    )


def _ascii(name: str) -> str:
    """A name as an email address's local part may hold it (Zoë -> zoe, O'Brien -> obrien)."""
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return "".join(character for character in folded.lower() if character.isalnum())


def burst_events(count: int, seed: int = 13) -> tuple[list[dict[str, Any]], int]:
    """``count`` deliveries with 1 % duplicates spread through them; and the number of distinct ones."""
    rng = random.Random(seed)
    duplicates = int(count * DUPLICATE_SHARE)
    unique = count - duplicates
    events = [registration(rng, index) for index in range(unique)]
    for event in rng.sample(events, duplicates):
        events.insert(rng.randrange(events.index(event) + 1, len(events) + 1), event)
    return events, unique


async def avro_codec(registry_url: str) -> TopicCodec:
    """The identity topic's codec, writing Avro under the registered UserRegistered schema."""
    codec = TopicCodec(USER_EVENTS, USER_REGISTERED, AsyncSchemaRegistryClient(registry_url), AVRO)
    await codec.register()
    return codec


def burst(count: int, registry_url: str) -> Burst:
    """A burst of ``count`` deliveries, encoded before any clock starts."""
    events, unique = burst_events(count)

    async def encode() -> list[tuple[bytes | None, bytes]]:
        codec = await avro_codec(registry_url)
        return [(event["aggregateId"].encode(), await codec.encode(event)) for event in events]

    return Burst(asyncio.run(encode()), events, unique)
