"""The fault harness's hooks: a transparent wrapper unless asked, firing only at its point."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

import pytest

from acme_customer.errors import StoreUnavailable
from acme_customer.faults import FaultyStore, requested
from tests.contracts.unit_of_work import UnitOfWorkContract, commit_registration, fresh_month, registration
from tests.unit.fakes import FakeCustomerStore


class TestTheWrappedStoreKeepsTheContract(UnitOfWorkContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> FaultyStore:
        armed = tmp_path / "trigger"
        armed.touch()  # armed, but for a point and a key these tests never pass
        env = {"ACME_FAULT_POINT": "create", "ACME_FAULT_KEY": str(uuid.uuid4()), "ACME_FAULT_TRIGGER": str(armed)}
        return FaultyStore(FakeCustomerStore(), env)


def test_the_hooks_are_requested_only_by_naming_a_point() -> None:
    assert requested({"ACME_FAULT_POINT": "after_commit"})
    assert not requested({})
    assert not requested({"ACME_FAULT_POINT": ""})


async def test_a_batch_holding_the_key_fails_transiently_while_the_trigger_exists(tmp_path: Path) -> None:
    trigger = tmp_path / "trigger"
    customer, event = registration(fresh_month(), 1)
    env = {"ACME_FAULT_POINT": "create", "ACME_FAULT_KEY": str(customer.user_id), "ACME_FAULT_TRIGGER": str(trigger)}
    store = FaultyStore(FakeCustomerStore(), env)
    trigger.touch()

    with pytest.raises(StoreUnavailable, match="injected"):
        await commit_registration(store, customer, event)
    trigger.unlink()
    await commit_registration(store, customer, event)

    assert customer.customer_id in store.inner.customers  # type: ignore[attr-defined]


@pytest.mark.parametrize("point", ["before_commit", "after_commit", "after_publish"])
async def test_a_crash_point_kills_the_worker_once_per_trigger_at_its_moment(
    point: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kills: list[tuple[int, int, int]] = []
    inner = FakeCustomerStore()
    # the kill itself cannot be real here: record it, with how many commits had happened by then
    monkeypatch.setattr(os, "kill", lambda pid, sig: kills.append((pid, sig, inner.commits)))
    trigger = tmp_path / "trigger"
    store = FaultyStore(inner, {"ACME_FAULT_POINT": point, "ACME_FAULT_TRIGGER": str(trigger)})
    customer, event = registration(fresh_month(), 1)

    await commit_registration(store, customer, event)  # not armed: nothing happens
    assert kills == []
    trigger.touch()
    other, other_event = registration(fresh_month(), 1)
    await commit_registration(store, other, other_event)
    await store.mark_published([other_event.event_id])
    await store.mark_published([other_event.event_id])  # the trigger is spent

    commits_at_kill = 1 if point == "before_commit" else 2  # the armed unit of work's commit: not yet, or done
    assert kills == [(os.getpid(), signal.SIGKILL, commits_at_kill)]
    assert not trigger.exists()
