"""The real adapters pass the port contracts (the fakes pass the same: tests/unit/test_fake_contracts.py)."""

from __future__ import annotations

import pytest

from acme_customer.adapters.mongo import MongoReadModel
from acme_customer.adapters.postgres import PostgresCustomerStore
from tests.contracts.read_model import ReadModelContract
from tests.contracts.unit_of_work import UnitOfWorkContract

pytestmark = pytest.mark.integration


class TestPostgresUnitOfWork(UnitOfWorkContract):
    @pytest.fixture
    def store(self, adapter_store: PostgresCustomerStore) -> PostgresCustomerStore:
        return adapter_store


class TestMongoReadModel(ReadModelContract):
    @pytest.fixture
    def read_model(self, adapter_read_model: MongoReadModel) -> MongoReadModel:
        return adapter_read_model
