"""The composition root builds the service over whatever it is given: here, the fakes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from acme_customer.bootstrap import Stores, bootstrap
from acme_customer.config import Settings
from acme_customer.faults import FaultyStore
from acme_customer.stream.records import Record
from tests.unit.builders import user_registered_document
from tests.unit.fakes import FakeCustomerStore, FakeProfiles, FakeReadModel

SETTINGS = Settings.from_env(
    {
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092",
        "DATABASE_URL": "postgresql://customer@127.0.0.1:5432/customer",
        "MONGODB_URI": "mongodb://127.0.0.1:27017/",
        "EVENT_FORMAT": "json",
        "RETRY_BACKOFF_SECONDS": "0,0",
    }
)


class RecordingProducer:
    """Faust's producer as far as the publisher uses it; every send is acknowledged at once."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []

    async def send(self, topic: str, key: bytes | None, value: bytes | None, *_: Any) -> asyncio.Future[None]:
        self.sent.append((topic, key, value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def fake_stores() -> Stores:
    store, read_model = FakeCustomerStore(), FakeReadModel()

    async def no_pages() -> AsyncIterator[list[dict[str, Any]]]:
        return
        yield

    return Stores(store, FakeProfiles(store.customers), read_model, no_pages)


async def test_the_service_built_over_fakes_registers_and_projects_a_customer() -> None:
    stores, producer = fake_stores(), RecordingProducer()
    services = await bootstrap(SETTINGS, producer, stores, registry=None, env={})
    value = json.dumps(user_registered_document()).encode()

    await services.register_customer.handle([Record("identity.user.events", 0, 0, b"k", value, [])])
    ((topic, key, published),) = producer.sent
    await services.project_customer.handle([Record(topic, 0, 0, key, published, [])])

    assert topic == "customer.events"
    (document,) = stores.read_model.documents.values()  # type: ignore[attr-defined]
    assert document["customerNumber"].startswith("ACME-202601-")
    assert await stores.command.ping() is True


async def test_the_fault_hooks_wrap_the_store_only_when_the_harness_asks(tmp_path: Path) -> None:
    plain = await bootstrap(SETTINGS, RecordingProducer(), fake_stores(), env={})
    hooked = await bootstrap(
        SETTINGS,
        RecordingProducer(),
        fake_stores(),
        env={"ACME_FAULT_POINT": "after_commit", "ACME_FAULT_TRIGGER": str(tmp_path / "never")},
    )

    assert not isinstance(plain.register_customer.store, FaultyStore)
    assert isinstance(hooked.register_customer.store, FaultyStore)
