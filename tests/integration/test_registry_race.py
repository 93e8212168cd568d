"""Workers started together on an empty registry all register the schema (issue 11): three processes
race on a fresh subject, for real, against the local Apicurio Registry."""

from __future__ import annotations

import asyncio
import multiprocessing
import uuid
from typing import Any

import pytest
from schema_registry.client import AsyncSchemaRegistryClient
from schema_registry.client.errors import ClientError

from acme_customer.adapters.codec import TopicCodec
from acme_customer.adapters.schemas import CUSTOMER_REGISTERED
from acme_customer.errors import AcmeCustomerError, RegistryUnavailable

pytestmark = pytest.mark.integration
WORKERS = 3


def _register(registry_url: str, topic: str, start: Any, answers: Any) -> None:
    """One 'worker': wait for the others, then register as a worker does at start."""

    async def register() -> str:
        codec = TopicCodec(topic, CUSTOMER_REGISTERED, AsyncSchemaRegistryClient(registry_url))
        start.wait()
        try:
            return f"id {await codec.register()}"
        except AcmeCustomerError as error:
            return f"failed: {error}"

    answers.put(asyncio.run(register()))


def _race(registry_url: str, topic: str) -> list[str]:
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(WORKERS)
    answers = context.Queue()
    workers = [context.Process(target=_register, args=(registry_url, topic, start, answers)) for _ in range(WORKERS)]
    for worker in workers:
        worker.start()
    results = [answers.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=10)
    return results


@pytest.mark.parametrize("round_", range(4))
def test_workers_registering_at_the_same_moment_on_an_empty_subject_all_succeed_with_one_id(
    registry_url: str, round_: int
) -> None:
    topic = f"race-{uuid.uuid4().hex[:12]}"

    results = _race(registry_url, topic)

    assert all(result.startswith("id ") for result in results), results
    assert len(set(results)) == 1, f"the workers hold different schema ids: {results}"

    async def state() -> tuple[Any, Any]:
        client = AsyncSchemaRegistryClient(registry_url)
        return await client.get_versions(f"{topic}-value"), await client.get_compatibility(f"{topic}-value")

    versions, compatibility = asyncio.run(state())
    assert (versions, compatibility) == ([1], "BACKWARD")


class Refusing(AsyncSchemaRegistryClient):
    """The real client, with the registry's refusal injected at an exact moment (what a race produces)."""

    def __init__(self, url: str, refuse: dict[str, int], after: bool = False) -> None:
        super().__init__(url)
        self.refuse = refuse  # call name -> how many more times to refuse it
        self.after = after  # refuse after the call took effect (another worker's write landed first)

    async def _maybe_refuse(self, name: str) -> None:
        if self.refuse.get(name, 0) > 0:
            self.refuse[name] -= 1
            raise ClientError("Unable to update level: BACKWARD.", http_code=409)

    async def update_compatibility(self, level: str, subject: str | None = None, **kwargs: Any) -> bool:
        await self._maybe_refuse("update_compatibility")
        return bool(await super().update_compatibility(level, subject, **kwargs))

    async def register(self, subject: str, schema: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if not self.after:
            await self._maybe_refuse("register")
        schema_id = await super().register(subject, schema, **kwargs)
        if self.after:
            await self._maybe_refuse("register")
        return schema_id


async def test_a_refusal_that_left_our_schema_registered_is_success_at_once(registry_url: str) -> None:
    topic = f"race-{uuid.uuid4().hex[:12]}"
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    codec = TopicCodec(topic, CUSTOMER_REGISTERED, Refusing(registry_url, {"register": 1}, after=True))

    schema_id = await codec.register(sleep=sleep)

    registered = await AsyncSchemaRegistryClient(registry_url).get_schema(f"{topic}-value")
    assert registered is not None and schema_id == registered.schema_id
    assert waits == []


async def test_a_refusal_that_did_not_settle_is_tried_again_after_a_wait(registry_url: str) -> None:
    topic = f"race-{uuid.uuid4().hex[:12]}"
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    codec = TopicCodec(topic, CUSTOMER_REGISTERED, Refusing(registry_url, {"update_compatibility": 2}))

    schema_id = await codec.register(delays=(0.1, 0.2, 0.4), sleep=sleep)

    assert schema_id > 0 and waits == [0.1, 0.2]
    assert await AsyncSchemaRegistryClient(registry_url).get_compatibility(f"{topic}-value") == "BACKWARD"


async def test_a_refusal_that_never_settles_is_reported_with_the_registrys_answer(registry_url: str) -> None:
    topic = f"race-{uuid.uuid4().hex[:12]}"

    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    codec = TopicCodec(topic, CUSTOMER_REGISTERED, Refusing(registry_url, {"update_compatibility": 99}))

    with pytest.raises(RegistryUnavailable) as raised:
        await codec.register(delays=(0.1, 0.2), sleep=sleep)

    assert waits == [0.1, 0.2]  # tried again after each delay, then reported
    assert str(raised.value).endswith("failed at start (3 attempts): HTTP 409: Unable to update level: BACKWARD.")
