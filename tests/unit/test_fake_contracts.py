"""The fakes pass the same contract tests as the real adapters (tests/integration/test_adapter_contracts.py)."""

from __future__ import annotations

import pytest

from tests.contracts.profiles import ProfileSourceContract
from tests.contracts.publisher import Letter, Published, PublisherContract
from tests.contracts.read_model import ReadModelContract
from tests.contracts.unit_of_work import UnitOfWorkContract
from tests.unit.fakes import FakeCustomerStore, FakeProfiles, FakePublisher, FakeReadModel


class TestFakeUnitOfWork(UnitOfWorkContract):
    @pytest.fixture
    def store(self) -> FakeCustomerStore:
        return FakeCustomerStore()


class TestFakeReadModel(ReadModelContract):
    @pytest.fixture
    def read_model(self) -> FakeReadModel:
        return FakeReadModel()


class TestFakePublisher(PublisherContract):
    scratch_topic = "scratch.contract"

    @pytest.fixture
    def publisher(self) -> FakePublisher:
        return FakePublisher()

    async def published(self, publisher: FakePublisher, customer_ids: list[str]) -> list[Published]:
        return [
            Published(envelope["aggregateId"].encode(), envelope["eventId"])
            for envelope in publisher.published
            if envelope["aggregateId"] in customer_ids
        ]

    async def dead_letters(self, publisher: FakePublisher, keys: list[bytes]) -> list[Letter]:
        return [
            Letter(
                f"{letter.origin[0]}.dlq",
                letter.key,
                letter.value,
                list(letter.headers or []),
                letter.error_class,
                letter.error_message,
                letter.attempts,
            )
            for letter in publisher.dead_letters
            if letter.key in keys
        ]


class TestFakeProfiles(ProfileSourceContract):
    @pytest.fixture
    def store(self) -> FakeCustomerStore:
        return FakeCustomerStore()

    @pytest.fixture
    def profiles(self, store: FakeCustomerStore) -> FakeProfiles:
        return FakeProfiles(store.customers)  # reads what the store committed
