"""The profile source's contract (customers read back for the projection), run against the fake and PostgreSQL.

A subclass provides ``store`` (to write customers with) and ``profiles`` over the same data.
"""

from __future__ import annotations

import uuid

from acme_customer.service_layer.ports import CustomerStore
from acme_customer.service_layer.project_customers import ProfileSource
from tests.contracts.unit_of_work import commit_registration, fresh_month, registration


class ProfileSourceContract:
    """What every ``ProfileSource`` does; subclasses give ``store`` and ``profiles``."""

    async def test_committed_customers_are_read_back_whole_and_unknown_ids_skipped(
        self, store: CustomerStore, profiles: ProfileSource
    ) -> None:
        year_month = fresh_month()
        written = [registration(year_month, n) for n in (1, 2)]
        for customer, event in written:
            await commit_registration(store, customer, event)

        found = await profiles.customers([customer.customer_id for customer, _ in written] + [uuid.uuid4()])

        assert sorted((c.to_read_model(1) for c in found), key=lambda d: str(d["_id"])) == sorted(
            (customer.to_read_model(1) for customer, _ in written), key=lambda d: str(d["_id"])
        )

    async def test_no_ids_read_nothing(self, profiles: ProfileSource) -> None:
        assert await profiles.customers([]) == []
