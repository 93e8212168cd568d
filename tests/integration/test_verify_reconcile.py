"""``acme-customer verify`` and ``reconcile`` as operators run them, over stores the service itself filled.

Each test gets its own PostgreSQL and MongoDB databases, filled through the service's own code
(the unit of work registers the customers, the publishing step marks their events published,
the projection writes the documents), then broken by hand the way operators break things.
``reconcile --apply`` publishes to the real ``customer.events``; the record is read back by eventId.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from opentelemetry.context import Context
from psycopg import sql
from pymongo import MongoClient
from schema_registry.client import AsyncSchemaRegistryClient

from acme_customer.adapters.codec import TopicCodec
from acme_customer.adapters.kafka import CUSTOMER_EVENTS
from acme_customer.adapters.migrations import apply_migrations
from acme_customer.adapters.mongo import MongoReadModel
from acme_customer.adapters.mongo_audit import MongoAudit
from acme_customer.adapters.postgres import PostgresCustomerStore, PostgresProfiles
from acme_customer.adapters.postgres_audit import PostgresAudit
from acme_customer.adapters.schemas import CUSTOMER_REGISTERED
from acme_customer.adapters.topics import end_offsets, read_topic
from acme_customer.domain.events import CustomerRegistered
from acme_customer.entrypoints.cli import EXIT_FINDINGS, EXIT_OK, EXIT_REPAIRS_PENDING
from acme_customer.service_layer.ports import EventPublisher
from acme_customer.service_layer.project_customers import project_registrations
from acme_customer.service_layer.register_customers import Outcome, publish_registrations, register_customers
from acme_customer.service_layer.verify_stores import (
    COUNTER_BEHIND,
    CUSTOMERS_WITHOUT_EVENT,
    DRIFTED_DOCUMENTS,
    EVENTS_WITHOUT_CUSTOMER,
    MISSING_DOCUMENTS,
    MISSING_INDEXES,
    NUMBER_GAPS,
    ORPHAN_DOCUMENTS,
    PROCESSED_WITHOUT_CUSTOMER,
    STALE_DOCUMENTS,
    UNPUBLISHED_EVENTS,
    Kind,
)
from tests.unit.builders import user_registered

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
CLI = str(REPO / ".venv" / "bin" / "acme-customer")
LINE = re.compile(r"^(?P<title>.*?): (?P<count>\d+) \((?P<ids>.*)\)$")


class Acknowledged(EventPublisher):
    """Kafka's acknowledgement without Kafka: the healthy stores need their events marked published,
    and publishing them to the shared customer.events would hand them to other suites' workers."""

    async def publish_customer_registered(
        self, events: Sequence[CustomerRegistered], trace_of: Mapping[UUID, Context] | None = None
    ) -> None:
        return None


@dataclass
class Stores:
    env: dict[str, str]
    database_url: str
    mongodb_uri: str
    database: str
    outcomes: list[Outcome]

    def sql(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url, autocommit=True) as connection:
            cursor = connection.execute(statement.encode(), params)
            return cursor.fetchall() if cursor.description else []

    @property
    def documents(self) -> Any:
        return MongoClient(self.mongodb_uri)[self.database]["customers"]

    def customer(self, index: int) -> Outcome:
        return self.outcomes[index]


async def _fill(database_url: str, mongodb_uri: str, database: str) -> list[Outcome]:
    """Five customers in January 2026 and three in February, as the service makes them."""
    store = PostgresCustomerStore.create(database_url)
    await store.open()
    read_model = MongoReadModel.create(mongodb_uri, database)
    try:
        await read_model.ensure_indexes()
        users = [
            user_registered(
                user_id=uuid.uuid4(), event_id=uuid.uuid4(), registered_at=datetime(2026, month, day, tzinfo=UTC)
            )
            for month, day in [(1, 3), (1, 4), (1, 5), (1, 6), (1, 7), (2, 1), (2, 2), (2, 3)]
        ]
        outcomes = await register_customers(users, store, lambda: datetime.now(UTC))
        await publish_registrations(outcomes, Acknowledged(), store)
        ids = [outcome.customer_id for outcome in outcomes if outcome.customer_id is not None]
        projection = await project_registrations(ids, PostgresProfiles(store.pool), read_model)
        assert projection.written == len(ids) == 8
        return outcomes
    finally:
        await read_model.close()
        await store.close()


@pytest.fixture
def stores(database_url: str, mongodb_uri: str, kafka_bootstrap: str, registry_url: str) -> Iterator[Stores]:
    name = f"it_verify_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = database_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        apply_migrations(url)
        outcomes = asyncio.run(_fill(url, mongodb_uri, name))
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "MONGODB_URI": mongodb_uri,
            "MONGODB_DATABASE": name,
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "SCHEMA_REGISTRY_URL": registry_url,
        }
        yield Stores(env, url, mongodb_uri, name, outcomes)
    finally:
        MongoClient(mongodb_uri).drop_database(name)
        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def cli(stores: Stores, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], env=stores.env, capture_output=True, text=True, timeout=300, check=False)


def reported(stdout: str) -> dict[str, tuple[int, list[str]]]:
    """Each finding line as title -> (count, ids); the summary line is left out."""
    found = {}
    for line in stdout.splitlines():
        match = LINE.match(line)
        if match and not line.startswith(("verify:", "reconcile:")):
            found[match["title"]] = (int(match["count"]), sorted(match["ids"].split(", ")))
    return found


def expect(*items: tuple[Kind, Sequence[Any]]) -> dict[str, tuple[int, list[str]]]:
    return {kind.title: (len(ids), sorted(", ".join(str(i) for i in ids).split(", "))) for kind, ids in items}


# -- a healthy stack ------------------------------------------------------------------------------


def test_verify_finds_nothing_in_stores_the_service_filled_and_exits_0(stores: Stores) -> None:
    result = cli(stores, "verify")

    assert result.returncode == EXIT_OK, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    assert re.fullmatch(
        r"verify: no findings; checked 8 read-model documents, 8 customers, 8 events, 8 processed events in [\d.]+ s",
        lines[0],
    )


def test_reconcile_on_healthy_stores_has_nothing_to_do_and_exits_0(stores: Stores) -> None:
    result = cli(stores, "reconcile")

    assert result.returncode == EXIT_OK, result.stdout + result.stderr
    assert result.stdout.startswith("reconcile: dry run, nothing changed; checked 8 read-model documents")


async def test_the_audit_adapters_walk_every_row_once_across_pages(stores: Stores) -> None:
    command = await PostgresAudit.connect(stores.database_url, page_size=3)
    read_model = MongoReadModel.create(stores.mongodb_uri, stores.database)
    try:
        customers = [state async for page in command.customer_pages(None) for state in page]
        from_january = [state async for page in command.customer_pages("202601") for state in page]
        from_february = [state async for page in command.customer_pages("202602") for state in page]
        events = [count async for count, _ in command.orphan_event_pages(None)]
        processed = [count async for count, _ in command.orphan_processed_pages(None)]
        documents = [len(page) async for page in MongoAudit(read_model, page_size=3).document_pages(None)]
    finally:
        await command.close()
        await read_model.close()

    ids = [outcome.customer_id for outcome in stores.outcomes]
    assert [state.customer_id for state in customers] == sorted(ids)  # each once, in keyset order
    numbers = sorted(str(outcome.event.customer_number) for outcome in stores.outcomes if outcome.event)
    assert [state.customer_number for state in from_january] == numbers  # by number, each once
    assert [state.customer_number for state in from_february] == numbers[5:]
    assert (events, processed, documents) == ([3, 3, 2], [3, 3, 2], [3, 3, 2])


# -- broken by hand -------------------------------------------------------------------------------


@dataclass
class Breakage:
    deleted_document: UUID  # its customer is intact
    unpublished_event: CustomerRegistered
    inserted_customer: UUID  # with preferences, but no event, no document, no counter update
    orphan_document: str
    deleted_customer: UUID  # a row deleted: a gap; its event, its document and its processed row stay
    deleted_customer_event: UUID
    deleted_customer_input: UUID
    drifted_document: UUID
    stale_document: UUID


def break_stores(stores: Stores) -> Breakage:
    outcomes = stores.outcomes
    event_of = {outcome.customer_id: outcome.event for outcome in outcomes}
    january = [o.customer_id for o in outcomes[:5]]
    february = [o.customer_id for o in outcomes[5:]]
    assert all(customer_id is not None for customer_id in january + february)
    unpublished = event_of[january[1]]
    assert unpublished is not None
    deleted = february[1]  # ACME-202602-000002
    deleted_event = event_of[deleted]
    assert deleted_event is not None

    stores.documents.delete_one({"_id": str(january[0])})
    stores.sql("UPDATE event_store SET published_at = NULL WHERE event_id = %s", (unpublished.event_id,))
    inserted = uuid.uuid4()
    stores.sql(
        "INSERT INTO customers (id, user_id, customer_number, first_name, last_name, display_name, email,"
        " registered_at, last_activity_at) VALUES (%s, %s, 'ACME-202601-000006', 'Behind', 'TheBack',"
        " 'Behind TheBack', 'behind@example.com', '2026-01-20T10:00:00Z', '2026-01-20T10:00:00Z')",
        (inserted, uuid.uuid4()),
    )
    stores.sql("INSERT INTO customer_preferences (customer_id) VALUES (%s)", (inserted,))
    orphan = str(uuid.uuid4())
    stores.documents.insert_one(
        {**stores.documents.find_one({"_id": str(january[2])}), "_id": orphan, "userId": "x", "customerNumber": "y"}
    )
    stores.sql("UPDATE processed_events SET customer_id = NULL WHERE customer_id = %s", (deleted,))
    stores.sql("DELETE FROM customer_preferences WHERE customer_id = %s", (deleted,))
    stores.sql("DELETE FROM customers WHERE id = %s", (deleted,))
    stores.documents.update_one({"_id": str(january[3])}, {"$set": {"status": "ACTIVE"}})
    stores.documents.update_one({"_id": str(february[2])}, {"$set": {"_version": 0}})
    stores.documents.drop_index("idx_status")
    return Breakage(
        deleted_document=january[0],
        unpublished_event=unpublished,
        inserted_customer=inserted,
        orphan_document=orphan,
        deleted_customer=deleted,
        deleted_customer_event=deleted_event.event_id,
        deleted_customer_input=outcomes[6].input_event_id,
        drifted_document=january[3],
        stale_document=february[2],
    )


UNREPAIRABLE = (PROCESSED_WITHOUT_CUSTOMER, NUMBER_GAPS, CUSTOMERS_WITHOUT_EVENT, EVENTS_WITHOUT_CUSTOMER)


def expected_findings(broken: Breakage) -> dict[str, tuple[int, list[str]]]:
    return expect(
        (PROCESSED_WITHOUT_CUSTOMER, [broken.deleted_customer_input]),
        (NUMBER_GAPS, ["ACME-202602-000002"]),
        (COUNTER_BEHIND, ["202601 (counter 5, highest number 6)"]),
        (CUSTOMERS_WITHOUT_EVENT, [broken.inserted_customer]),
        (UNPUBLISHED_EVENTS, [broken.unpublished_event.event_id]),
        (EVENTS_WITHOUT_CUSTOMER, [broken.deleted_customer_event]),
        (MISSING_DOCUMENTS, [broken.deleted_document, broken.inserted_customer]),
        (STALE_DOCUMENTS, [broken.stale_document]),
        (DRIFTED_DOCUMENTS, [broken.drifted_document]),
        (ORPHAN_DOCUMENTS, [broken.orphan_document, broken.deleted_customer]),
        (MISSING_INDEXES, ["idx_status"]),
    )


def test_verify_reports_exactly_what_was_broken_by_kind_count_and_id_and_exits_1(stores: Stores) -> None:
    broken = break_stores(stores)

    result = cli(stores, "verify")

    assert result.returncode == EXIT_FINDINGS, result.stdout + result.stderr
    assert reported(result.stdout) == expected_findings(broken)
    assert result.stdout.splitlines()[-1].startswith("verify: 11 kind(s) of finding;")
    for secret in ("behind@example.com", "Behind", "TheBack", "customer@example.com", "Jane", "Doe"):
        assert secret not in result.stdout + result.stderr


def test_verify_since_a_month_checks_only_the_customers_of_that_month_on(stores: Stores) -> None:
    broken = break_stores(stores)

    result = cli(stores, "verify", "--since", "2026-02")

    assert result.returncode == EXIT_FINDINGS, result.stdout + result.stderr
    # January's findings are out of scope; the orphan's customerNumber ("y") sorts after ACME-202602
    assert reported(result.stdout) == expect(
        (PROCESSED_WITHOUT_CUSTOMER, [broken.deleted_customer_input]),  # processed since February: all of them
        (NUMBER_GAPS, ["ACME-202602-000002"]),
        (EVENTS_WITHOUT_CUSTOMER, [broken.deleted_customer_event]),
        (STALE_DOCUMENTS, [broken.stale_document]),
        (ORPHAN_DOCUMENTS, [broken.orphan_document, broken.deleted_customer]),
        (MISSING_INDEXES, ["idx_status"]),
    )
    assert "checked 4 read-model documents, 2 customers, 3 events, 8 processed events in " in result.stdout


def test_reconcile_dry_run_lists_the_repairs_changes_nothing_and_exits_4(stores: Stores) -> None:
    broken = break_stores(stores)
    before = cli(stores, "verify").stdout

    dry = cli(stores, "reconcile")

    assert dry.returncode == EXIT_REPAIRS_PENDING, dry.stdout + dry.stderr
    lines = dry.stdout.splitlines()
    would = [line for line in lines if line.startswith("would repair ")]
    cannot = [line for line in lines if line.startswith("cannot be repaired: ")]
    assert len(would) == 7 and len(cannot) == 4, dry.stdout
    assert any(str(broken.unpublished_event.event_id) in line and "same eventId" in line for line in would)
    assert any(
        "customer numbers missing (gaps): 1 (ACME-202602-000002)" in line and "deleted" in line for line in cannot
    )
    assert lines[-1].startswith("reconcile: dry run, nothing changed;")
    after = cli(stores, "verify").stdout
    assert reported(after) == reported(before) == expected_findings(broken)


def test_reconcile_apply_repairs_what_the_source_of_truth_can_and_verify_then_reports_only_the_rest(
    stores: Stores, kafka_bootstrap: str, registry_url: str
) -> None:
    broken = break_stores(stores)
    since = asyncio.run(end_offsets(kafka_bootstrap, CUSTOMER_EVENTS))

    applied = cli(stores, "reconcile", "--apply")

    assert applied.returncode == EXIT_FINDINGS, applied.stdout + applied.stderr  # the unrepairable remain
    lines = applied.stdout.splitlines()
    assert [line.split(":")[0] for line in lines if line.startswith("repaired ")] == [
        "repaired 1 of 1",  # counter
        "repaired 1 of 1",  # unpublished event
        "repaired 2 of 2",  # missing documents
        "repaired 1 of 1",  # stale document
        "repaired 1 of 1",  # drifted document
        "repaired 2 of 2",  # orphans
        "repaired 1 of 1",  # index
    ], applied.stdout
    assert lines[-1].startswith("reconcile: applied;")

    # the stored event, same eventId, really is on customer.events
    record = asyncio.run(_published(kafka_bootstrap, registry_url, since, broken.unpublished_event.event_id))
    assert record.key == str(broken.unpublished_event.customer_id).encode()
    assert record.document == broken.unpublished_event.to_dict()
    assert stores.sql(
        "SELECT published_at IS NOT NULL FROM event_store WHERE event_id = %s", (broken.unpublished_event.event_id,)
    ) == [(True,)]

    after = cli(stores, "verify")
    assert after.returncode == EXIT_FINDINGS
    assert reported(after.stdout) == {
        title: finding
        for title, finding in expected_findings(broken).items()
        if title in {kind.title for kind in UNREPAIRABLE}
    }
    # the documents are what the projection writes, and the counter lets the next customer in
    assert stores.documents.find_one({"_id": str(broken.drifted_document)})["status"] == "PENDING_VERIFICATION"
    assert stores.documents.find_one({"_id": broken.orphan_document}) is None
    assert stores.sql("SELECT current_value FROM customer_number_sequences WHERE year_month = '202601'") == [(6,)]

    again = cli(stores, "reconcile", "--apply")  # idempotent: nothing left to repair, the rest reported again
    assert again.returncode == EXIT_FINDINGS
    assert not [line for line in again.stdout.splitlines() if line.startswith("repaired ")]
    assert len([line for line in again.stdout.splitlines() if line.startswith("cannot be repaired: ")]) == 4


# -- Kafka ---------------------------------------------------------------------------------------


@dataclass
class Published:
    key: bytes
    document: dict[str, Any]


async def _published(bootstrap: str, registry_url: str, since: dict[int, int], event_id: UUID) -> Published:
    def with_event_id(records: list[Any]) -> list[Any]:
        return [r for r in records if dict(r.headers).get("eventId") == str(event_id).encode()]

    records = await read_topic(
        bootstrap, CUSTOMER_EVENTS, since=since, until=lambda found: bool(with_event_id(found)), timeout=30
    )
    (record,) = with_event_id(records)
    codec = TopicCodec(CUSTOMER_EVENTS, CUSTOMER_REGISTERED, AsyncSchemaRegistryClient(registry_url))
    return Published(record.key, await codec.decode(record.value))
