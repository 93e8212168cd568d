"""The fakes pass the same contract tests as the real adapters (tests/integration/test_adapter_contracts.py)."""

from __future__ import annotations

import pytest

from tests.contracts.read_model import ReadModelContract
from tests.contracts.unit_of_work import UnitOfWorkContract
from tests.unit.fakes import FakeCustomerStore, FakeReadModel


class TestFakeUnitOfWork(UnitOfWorkContract):
    @pytest.fixture
    def store(self) -> FakeCustomerStore:
        return FakeCustomerStore()


class TestFakeReadModel(ReadModelContract):
    @pytest.fixture
    def read_model(self) -> FakeReadModel:
        return FakeReadModel()
