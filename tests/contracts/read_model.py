"""The read model's contract, written once and run against the fake and the MongoDB adapter.

A subclass provides the ``read_model`` fixture (a ``ReadModel``).
"""

from __future__ import annotations

import pytest

from acme_customer.errors import ReadModelConflict
from acme_customer.service_layer.project_customers import ReadModel
from tests.contracts.unit_of_work import fresh_month, registration


def document(sequence: int = 1, version: int = 1, **changes: object) -> dict[str, object]:
    customer, _ = registration(fresh_month(), sequence)
    return {**customer.to_read_model(version), **changes}


class ReadModelContract:
    """What every ``ReadModel`` does; subclasses give the ``read_model`` fixture."""

    async def test_new_documents_are_written_and_counted(self, read_model: ReadModel) -> None:
        assert await read_model.upsert([document(), document()]) == 2

    async def test_the_same_version_again_changes_nothing(self, read_model: ReadModel) -> None:
        first = document()
        await read_model.upsert([first])

        assert await read_model.upsert([{**first, "firstName": "Changed"}]) == 0

    async def test_a_higher_version_replaces_and_a_lower_one_does_not(self, read_model: ReadModel) -> None:
        first = document(version=2)
        await read_model.upsert([first])

        assert await read_model.upsert([{**first, "_version": 1, "firstName": "Older"}]) == 0
        assert await read_model.upsert([{**first, "_version": 3, "firstName": "Newer"}]) == 1

    async def test_another_document_holding_the_user_id_is_a_conflict(self, read_model: ReadModel) -> None:
        first = document()
        await read_model.upsert([first])

        with pytest.raises(ReadModelConflict):
            await read_model.upsert([document(userId=first["userId"])])

    async def test_another_document_holding_the_customer_number_is_a_conflict(self, read_model: ReadModel) -> None:
        first = document()
        await read_model.upsert([first])

        with pytest.raises(ReadModelConflict):
            await read_model.upsert([document(customerNumber=first["customerNumber"])])

    async def test_an_empty_batch_writes_nothing(self, read_model: ReadModel) -> None:
        assert await read_model.upsert([]) == 0

    async def test_a_document_is_found_by_its_id_user_id_or_customer_number(self, read_model: ReadModel) -> None:
        stored = document()
        await read_model.upsert([stored, document()])

        for key in ("_id", "userId", "customerNumber"):
            found = await read_model.find_one({key: stored[key]})
            assert found is not None and found["_id"] == stored["_id"], key
        assert await read_model.find_one({"userId": "not-stored"}) is None

    async def test_a_reachable_read_model_answers_a_ping(self, read_model: ReadModel) -> None:
        assert await read_model.ping() is True
