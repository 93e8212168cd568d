"""verify and reconcile over fakes: each kind of finding, exactly; each repair, from the source of truth."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest

from acme_customer.domain.customer import Customer, register_customer
from acme_customer.domain.customer_number import CustomerNumber
from acme_customer.domain.events import CustomerRegistered
from acme_customer.service_layer import verify_stores as kinds
from acme_customer.service_layer.project_customers import REGISTRATION_VERSION
from acme_customer.service_layer.reconcile_stores import Repairs, reconcile_stores
from acme_customer.service_layer.verify_stores import (
    EXAMPLES,
    Findings,
    IndexReport,
    Kind,
    NumberBits,
    Tally,
    verify_stores,
)
from tests.unit.audit_fakes import FakeCommandAudit, FakeReadModelAudit
from tests.unit.builders import user_registered
from tests.unit.fakes import FakeProfiles, FakeReadModel

NOW = datetime(2026, 3, 1, tzinfo=UTC)


class World:
    """Customers registered and projected as the service does, in January (4) and February (3) 2026."""

    def __init__(self, january: int = 4, february: int = 3) -> None:
        self.command = FakeCommandAudit()
        self.read_model = FakeReadModel()
        self.audit = FakeReadModelAudit(self.read_model)
        self.ids: list[UUID] = []
        self.events: dict[UUID, CustomerRegistered] = {}
        self.inputs: dict[UUID, UUID] = {}
        for month, count in (("202601", january), ("202602", february)):
            for sequence in range(1, count + 1):
                self.add(CustomerNumber(month, sequence))

    def add(self, number: CustomerNumber) -> Customer:
        user = user_registered(user_id=uuid.uuid4(), event_id=uuid.uuid4())
        customer, event = register_customer(user, number, NOW)
        self.command.register(customer, event, user.event_id)
        self.read_model.documents[str(customer.customer_id)] = customer.to_read_model(REGISTRATION_VERSION)
        self.ids.append(customer.customer_id)
        self.events[customer.customer_id] = event
        self.inputs[customer.customer_id] = user.event_id
        return customer

    def document(self, customer_id: UUID) -> dict[str, Any]:
        return self.read_model.documents[str(customer_id)]

    async def verify(self, since: str | None = None) -> dict[Kind, tuple[int, list[str]]]:
        findings = await verify_stores(self.command, self.audit, since)
        return {kind: (tally.count, sorted(tally.examples)) for kind, tally in findings.tallies.items()}


def found(*items: tuple[Kind, Sequence[Any]]) -> dict[Kind, tuple[int, list[str]]]:
    return {kind: (len(ids), sorted(str(i) for i in ids)) for kind, ids in items}


# -- verify ---------------------------------------------------------------------------------------


async def test_stores_as_the_service_leaves_them_have_no_findings() -> None:
    world = World()

    assert await world.verify() == {}


async def test_documents_missing_older_different_newer_or_without_a_customer_are_each_reported() -> None:
    world = World()
    missing, stale, drifted, ahead = world.ids[:4]
    del world.read_model.documents[str(missing)]
    world.document(stale)["_version"] = 0
    world.document(drifted)["email"] = {"address": "other@example.com", "verified": False}
    world.document(ahead)["_version"] = 2
    orphan = str(uuid.uuid4())
    world.read_model.documents[orphan] = {**world.document(world.ids[4]), "_id": orphan}
    shouting = str(world.ids[5]).upper()  # not an _id the projection writes, whoever it names
    world.read_model.documents[shouting] = {"_id": shouting, "customerNumber": "ACME-202602-000002"}
    world.read_model.documents[42] = {"_id": 42}  # type: ignore[index]

    assert await world.verify() == found(
        (kinds.MISSING_DOCUMENTS, [missing]),
        (kinds.STALE_DOCUMENTS, [stale]),
        (kinds.DRIFTED_DOCUMENTS, [drifted]),
        (kinds.DOCUMENTS_AHEAD, [ahead]),
        (kinds.ORPHAN_DOCUMENTS, [orphan, shouting, 42]),
    )


async def test_a_document_without_a_version_counts_as_older() -> None:
    world = World()
    del world.document(world.ids[0])["_version"]

    assert await world.verify() == found((kinds.STALE_DOCUMENTS, [world.ids[0]]))


async def test_customers_without_event_with_two_events_unpublished_or_without_preferences_are_each_reported() -> None:
    world = World()
    lonely, doubled, unpublished, bare = world.ids[:4]
    world.command.events.pop(world.events[lonely].event_id)
    second = replace(world.events[doubled], event_id=uuid.uuid4())
    world.command.events[second.event_id] = second
    world.command.published.add(second.event_id)
    world.command.published.discard(world.events[unpublished].event_id)
    world.command.without_preferences.add(bare)
    del world.read_model.documents[str(bare)]  # not reported as missing: it cannot be projected

    assert await world.verify() == found(
        (kinds.CUSTOMERS_WITHOUT_EVENT, [lonely]),
        (kinds.CUSTOMERS_WITH_SEVERAL_EVENTS, [doubled]),
        (kinds.UNPUBLISHED_EVENTS, [world.events[unpublished].event_id]),
        (kinds.CUSTOMERS_WITHOUT_PREFERENCES, [bare]),
    )


async def test_a_deleted_customer_leaves_a_gap_an_orphaned_event_processed_row_and_document() -> None:
    world = World()
    deleted = world.ids[1]  # ACME-202601-000002
    world.command.delete_customer(deleted)

    assert await world.verify() == found(
        (kinds.NUMBER_GAPS, ["ACME-202601-000002"]),
        (kinds.EVENTS_WITHOUT_CUSTOMER, [world.events[deleted].event_id]),
        (kinds.PROCESSED_WITHOUT_CUSTOMER, [world.inputs[deleted]]),
        (kinds.ORPHAN_DOCUMENTS, [deleted]),
    )


async def test_numbers_handed_out_up_to_the_counter_but_missing_are_gaps_and_a_counter_behind_is_reported() -> None:
    world = World()
    world.command.counter["202601"] = 6  # 5 and 6 were handed out; their rows are gone
    world.command.counter["202602"] = 2  # behind the highest number taken, 3
    world.command.counter["202512"] = 2  # a month with no customers left at all
    world.command.processed[uuid.uuid4()] = None  # a guard row that names no customer

    result = await world.verify()

    assert result == found(
        (kinds.NUMBER_GAPS, ["ACME-202512-000001", "ACME-202512-000002", "ACME-202601-000005", "ACME-202601-000006"]),
        (kinds.COUNTER_BEHIND, ["202602 (counter 2, highest number 3)"]),
        (kinds.PROCESSED_WITHOUT_CUSTOMER, [next(i for i, c in world.command.processed.items() if c is None)]),
    )


async def test_malformed_and_duplicate_numbers_are_reported() -> None:
    world = World()
    world.command.numbers[world.ids[0]] = "CUST-1"
    world.command.numbers[world.ids[2]] = "ACME-202601-000002"  # the number of ids[1] too
    del world.read_model.documents[str(world.ids[0])]  # a malformed number is still looked for in the read model

    assert await world.verify() == found(
        (kinds.MALFORMED_NUMBERS, [world.ids[0]]),
        (kinds.DUPLICATE_NUMBERS, ["ACME-202601-000002"]),
        (kinds.NUMBER_GAPS, ["ACME-202601-000001", "ACME-202601-000003"]),
        (kinds.MISSING_DOCUMENTS, [world.ids[0]]),
    )


async def test_a_customer_whose_number_was_overwritten_keeps_its_document_and_leaves_a_gap() -> None:
    world = World()
    world.command.numbers[world.ids[3]] = "CUST-4"  # was ACME-202601-000004, which the counter handed out

    assert await world.verify() == found(
        (kinds.MALFORMED_NUMBERS, [world.ids[3]]), (kinds.NUMBER_GAPS, ["ACME-202601-000004"])
    )


async def test_indexes_that_differ_from_the_declaration_are_reported_by_name() -> None:
    world = World()
    world.audit.report = IndexReport(missing=["idx_status"], different=["idx_email"], undeclared=["by_hand"])

    assert await world.verify() == found(
        (kinds.MISSING_INDEXES, ["idx_status"]),
        (kinds.DIFFERENT_INDEXES, ["idx_email"]),
        (kinds.UNDECLARED_INDEXES, ["by_hand"]),
    )


async def test_since_a_month_leaves_the_earlier_months_out() -> None:
    world = World()
    del world.read_model.documents[str(world.ids[0])]  # January
    world.command.counter["202601"] = 9  # January
    del world.read_model.documents[str(world.ids[5])]  # February

    assert await world.verify(since="202602") == found((kinds.MISSING_DOCUMENTS, [world.ids[5]]))


async def test_a_gap_of_ten_million_numbers_is_counted_without_listing_it() -> None:
    world = World(january=0, february=0)
    world.command.counter["202601"] = 10_000_000

    result = await world.verify()

    count, examples = result[kinds.NUMBER_GAPS]
    assert count == 10_000_000
    assert examples == sorted(str(CustomerNumber("202601", n)) for n in range(1, EXAMPLES + 1))


def test_a_tally_keeps_the_count_and_the_first_ten_ids() -> None:
    tally = Tally()
    tally.add([f"id{n}" for n in range(7)])
    tally.add([f"id{n}" for n in range(7, 12)])

    assert tally.count == 12
    assert tally.examples == [f"id{n}" for n in range(10)]
    assert str(tally).endswith("id9, …)")
    assert str(Tally(1, ["x"])) == "1 (x)"


async def test_findings_print_one_line_per_kind_in_a_fixed_order() -> None:
    findings = Findings()
    await findings.add({kinds.ORPHAN_DOCUMENTS: ["d1"], kinds.NUMBER_GAPS: ["ACME-202601-000002"]})
    await findings.add({kinds.UNPUBLISHED_EVENTS: []})

    assert findings.lines() == [
        "customer numbers missing (gaps): 1 (ACME-202601-000002)",
        "documents without a customer (document _ids): 1 (d1)",
    ]


def test_number_bits_know_duplicates_highest_and_missing_numbers() -> None:
    bits = NumberBits()
    assert bits.add(CustomerNumber("202601", 3))
    assert bits.add(CustomerNumber("202601", 17))
    assert not bits.add(CustomerNumber("202601", 3))

    missing = bits.missing("202601", 18)
    assert (bits.highest("202601"), bits.count("202601"), len(missing)) == (17, 2, 16)
    assert missing[0] == CustomerNumber("202601", 1)
    assert list(missing[2:4]) == [CustomerNumber("202601", 4), CustomerNumber("202601", 5)]
    assert CustomerNumber("202602", 1) not in bits


# -- reconcile ------------------------------------------------------------------------------------


class Published:
    def __init__(self, command: FakeCommandAudit) -> None:
        self.command = command
        self.events: list[CustomerRegistered] = []

    async def __call__(self, events: Sequence[CustomerRegistered]) -> None:
        self.events.extend(events)
        self.command.published.update(event.event_id for event in events)  # as publish_events marks them


def break_everything(world: World) -> dict[str, Any]:
    missing, stale, drifted, ahead, unpublished = world.ids[:5]
    deleted = world.ids[5]  # ACME-202602-000002
    del world.read_model.documents[str(missing)]
    world.document(stale)["_version"] = 0
    world.document(drifted)["status"] = "ACTIVE"
    world.document(ahead)["_version"] = 2
    world.command.published.discard(world.events[unpublished].event_id)
    orphan = str(uuid.uuid4())
    world.read_model.documents[orphan] = {"_id": orphan, "customerNumber": "ACME-209901-000001", "_version": 1}
    world.command.delete_customer(deleted)
    world.command.counter["202602"] = 1
    world.audit.report = IndexReport(missing=["idx_status"], different=[], undeclared=[])
    return {
        "missing": missing,
        "stale": stale,
        "drifted": drifted,
        "ahead": ahead,
        "unpublished": unpublished,
        "orphan": orphan,
        "deleted": deleted,
    }


def repairs_of(world: World, published: Published) -> Repairs:
    return Repairs(world.command, world.audit, FakeProfiles(world.command.rows), world.read_model, published)


async def test_reconcile_without_apply_says_what_it_would_do_and_changes_nothing() -> None:
    world = World()
    break_everything(world)
    before = await world.verify()
    documents = {key: dict(value) for key, value in world.read_model.documents.items()}

    result = await reconcile_stores(world.command, world.audit, None)

    assert not result.applied
    assert await world.verify() == before
    assert world.read_model.documents == documents
    assert world.command.counter["202602"] == 1
    assert result.pending() == [
        kinds.COUNTER_BEHIND,
        kinds.UNPUBLISHED_EVENTS,
        kinds.MISSING_DOCUMENTS,
        kinds.STALE_DOCUMENTS,
        kinds.DRIFTED_DOCUMENTS,
        kinds.ORPHAN_DOCUMENTS,
        kinds.MISSING_INDEXES,
    ]
    assert result.unrepairable() == [
        kinds.PROCESSED_WITHOUT_CUSTOMER,
        kinds.NUMBER_GAPS,
        kinds.EVENTS_WITHOUT_CUSTOMER,
        kinds.DOCUMENTS_AHEAD,
    ]
    lines = result.lines()
    assert lines[0].startswith("would repair 1: month counters behind")
    assert lines[-1].startswith("cannot be repaired: documents newer than anything PostgreSQL holds")
    assert "delete them and run reconcile" in lines[-1]


async def test_reconcile_apply_repairs_from_the_source_of_truth_and_leaves_the_rest() -> None:
    world = World()
    broken = break_everything(world)
    published = Published(world.command)

    result = await reconcile_stores(world.command, world.audit, repairs_of(world, published))

    assert result.applied
    assert published.events == [world.events[broken["unpublished"]]]  # the stored event, same eventId
    for customer_id in (broken["missing"], broken["stale"], broken["drifted"]):
        assert world.document(customer_id) == world.command.rows[customer_id].to_read_model(REGISTRATION_VERSION)
    assert world.document(broken["ahead"])["_version"] == 2  # never replaced by an older version
    assert broken["orphan"] not in world.read_model.documents
    assert str(broken["deleted"]) not in world.read_model.documents
    assert world.command.counter["202602"] == 3
    assert world.audit.indexes_ensured == 1
    assert {kind: count for kind, count in result.repaired.items()} == {
        kinds.COUNTER_BEHIND: 1,
        kinds.UNPUBLISHED_EVENTS: 1,
        kinds.MISSING_DOCUMENTS: 1,
        kinds.STALE_DOCUMENTS: 1,
        kinds.DRIFTED_DOCUMENTS: 1,
        kinds.ORPHAN_DOCUMENTS: 2,
        kinds.MISSING_INDEXES: 1,
    }
    assert result.lines()[0] == (
        "repaired 1 of 1: month counters behind the highest number taken (months):"
        " 1 (202602 (counter 1, highest number 3))"
    )
    assert await world.verify() == found(
        (kinds.PROCESSED_WITHOUT_CUSTOMER, [world.inputs[broken["deleted"]]]),
        (kinds.NUMBER_GAPS, ["ACME-202602-000002"]),
        (kinds.EVENTS_WITHOUT_CUSTOMER, [world.events[broken["deleted"]].event_id]),
        (kinds.DOCUMENTS_AHEAD, [broken["ahead"]]),
    )


async def test_reconcile_does_not_delete_a_document_whose_customer_appeared_meanwhile() -> None:
    world = World()
    late = world.ids[0]
    customer = world.command.rows[late]
    world.command.delete_customer(late)

    class Arriving(FakeCommandAudit):
        async def existing(self, customer_ids: Sequence[UUID]) -> set[UUID]:
            self.rows[late] = customer  # committed between the walk and the repair
            self.numbers[late] = str(customer.customer_number)
            return await super().existing(customer_ids)

    world.command = Arriving(**{name: getattr(world.command, name) for name in vars(world.command)})
    result = await reconcile_stores(world.command, world.audit, repairs_of(world, Published(world.command)))

    assert result.repaired[kinds.ORPHAN_DOCUMENTS] == 0
    assert str(late) in world.read_model.documents


@pytest.mark.parametrize("applied", [False, True])
async def test_reconcile_on_healthy_stores_finds_and_does_nothing(applied: bool) -> None:
    world = World()
    published = Published(world.command)

    result = await reconcile_stores(world.command, world.audit, repairs_of(world, published) if applied else None)

    assert (result.pending(), result.unrepairable(), result.repaired, published.events) == ([], [], {}, [])
    assert result.lines() == []
