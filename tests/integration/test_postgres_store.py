"""The PostgreSQL command store and event store (adapters/postgres.py) under create_customers, on a real server.

The module has its own migrated database (see conftest.py); every test uses months of its own, so
the month counters of different tests never meet.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg import sql

from acme_customer.adapters import postgres
from acme_customer.adapters.migrations import apply_migrations, migration_files
from acme_customer.adapters.postgres import PostgresCustomerStore, PostgresProfiles, PostgresUnitOfWork
from acme_customer.domain.customer import Customer, Preferences
from acme_customer.domain.customer_number import CustomerNumber
from acme_customer.domain.events import UserRegistered
from acme_customer.errors import PermanentError, StoreDefect, StoreUnavailable
from acme_customer.service_layer.register_customers import Outcome, register_customers
from tests.integration.conftest import opened_store

pytestmark = pytest.mark.integration

_month_index = itertools.count()


def fresh_months(count: int = 1) -> list[datetime]:
    """``count`` consecutive months no other test of this module uses (first instant of each, UTC)."""
    start = next(_month_index)
    for _ in range(count - 1):
        next(_month_index)
    return [datetime(2030 + (start + i) // 12, (start + i) % 12 + 1, 1, tzinfo=UTC) for i in range(count)]


def year_month(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m")


def now() -> datetime:
    return datetime.now(UTC)


def a_user(
    registered_at: datetime,
    *,
    user_id: UUID | None = None,
    event_id: UUID | None = None,
    marketing_opt_in: bool = False,
) -> UserRegistered:
    user_id = user_id or uuid.uuid4()
    event_id = event_id or uuid.uuid4()
    return UserRegistered(
        event_id=event_id,
        timestamp=registered_at,
        correlation_id=uuid.uuid4(),
        causation_id=None,
        user_id=user_id,
        email=f"user-{user_id.hex[:8]}@example.com",
        first_name="Jane",
        last_name="Doe",
        marketing_opt_in=marketing_opt_in,
        registered_at=registered_at,
    )


def redelivered(user: UserRegistered, *, event_id: UUID | None = None) -> UserRegistered:
    """The same registration, as the same event (default) or as another event for the same user."""
    return UserRegistered(**{**user.__dict__, "event_id": event_id or user.event_id})


async def rows(store: PostgresCustomerStore, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    async with store.pool.connection() as connection, connection.cursor() as cursor:
        await cursor.execute(query, params)
        return await cursor.fetchall()


async def counter(store: PostgresCustomerStore, month: str) -> int | None:
    found = await rows(store, "SELECT current_value FROM customer_number_sequences WHERE year_month = %s", (month,))
    return found[0][0] if found else None


async def numbers_of_month(store: PostgresCustomerStore, month: str) -> list[int]:
    found = await rows(
        store, "SELECT customer_number FROM customers WHERE customer_number LIKE %s", (f"ACME-{month}-%",)
    )
    return sorted(CustomerNumber.parse(number).sequence for (number,) in found)


async def customers_of(store: PostgresCustomerStore, user_id: UUID) -> list[tuple[UUID, str]]:
    found = await rows(store, "SELECT id, customer_number FROM customers WHERE user_id = %s", (user_id,))
    return [(row[0], row[1]) for row in found]


async def registered_events_of(store: PostgresCustomerStore, customer_id: UUID) -> list[dict[str, Any]]:
    found = await rows(
        store,
        "SELECT envelope FROM event_store WHERE aggregate_id = %s AND event_type = 'CustomerRegistered'",
        (customer_id,),
    )
    return [row[0] for row in found]


async def processed(store: PostgresCustomerStore, event_ids: Sequence[UUID]) -> dict[UUID, UUID | None]:
    found = await rows(
        store, "SELECT event_id, customer_id FROM processed_events WHERE event_id = ANY(%s)", (list(event_ids),)
    )
    return {row[0]: row[1] for row in found}


def number_of(outcome: Outcome) -> CustomerNumber:
    assert outcome.event is not None
    return CustomerNumber.parse(outcome.event.customer_number)


# -- migrations -----------------------------------------------------------------------------------


def test_migrations_are_recorded_and_applying_them_again_changes_nothing(adapter_pg_url: str) -> None:
    versions = [version for version, _ in migration_files()]
    assert "0001_customer_profile" in versions

    assert apply_migrations(adapter_pg_url) == []

    with psycopg.connect(adapter_pg_url) as connection:
        recorded = [row[0] for row in connection.execute("SELECT version FROM schema_migrations ORDER BY version")]
        tables = {
            row[0]
            for row in connection.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        }
    assert recorded == versions
    assert {
        "customers",
        "customer_preferences",
        "customer_number_sequences",
        "event_store",
        "processed_events",
    } <= tables


# -- AC-0002-03-04: transactional consistency -----------------------------------------------------


async def test_ac04_event_store_failure_rolls_back_customer_and_counter(adapter_store: PostgresCustomerStore) -> None:
    (month,) = fresh_months()
    ym = year_month(month)
    first = a_user(month)
    [seeded] = await register_customers([first], adapter_store, now)
    assert number_of(seeded).sequence == 1
    assert await counter(adapter_store, ym) == 1

    neighbour = a_user(month + timedelta(hours=1))
    doomed = a_user(month + timedelta(hours=2), marketing_opt_in=True)
    function = sql.Identifier(f"fail_event_{doomed.event_id.hex}")
    trigger = sql.Identifier(f"fail_event_{doomed.event_id.hex}")
    async with adapter_store.pool.connection() as connection:
        await connection.execute(
            sql.SQL(
                "CREATE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS"
                " $$ BEGIN RAISE EXCEPTION 'event store refuses this event'; END $$"
            ).format(function)
        )
        await connection.execute(
            sql.SQL(
                "CREATE TRIGGER {} BEFORE INSERT ON event_store FOR EACH ROW"
                " WHEN (NEW.causation_id = {}::uuid) EXECUTE FUNCTION {}()"
            ).format(trigger, sql.Literal(str(doomed.event_id)), function)
        )
    try:
        # the event-store insert fails after the customers and preferences rows went in, in the same transaction
        # (a RAISE from a trigger: not an outage, so a StoreDefect, which the handlers isolate record by record)
        with pytest.raises(StoreDefect, match="RaiseException"):
            await register_customers([neighbour, doomed], adapter_store, now)

        for user in (neighbour, doomed):
            assert await customers_of(adapter_store, user.user_id) == []
        orphans = await rows(
            adapter_store,
            "SELECT count(*) FROM customer_preferences p LEFT JOIN customers c ON c.id = p.customer_id"
            " WHERE c.id IS NULL OR c.user_id = ANY(%s)",
            ([neighbour.user_id, doomed.user_id],),
        )
        assert orphans == [(0,)]
        assert await processed(adapter_store, [neighbour.event_id, doomed.event_id]) == {}
        stored = await rows(
            adapter_store,
            "SELECT count(*) FROM event_store WHERE causation_id = ANY(%s)",
            ([neighbour.event_id, doomed.event_id],),
        )
        assert stored == [(0,)]
        assert await counter(adapter_store, ym) == 1
        assert await numbers_of_month(adapter_store, ym) == [1]
    finally:
        async with adapter_store.pool.connection() as connection:
            await connection.execute(sql.SQL("DROP TRIGGER IF EXISTS {} ON event_store").format(trigger))
            await connection.execute(sql.SQL("DROP FUNCTION IF EXISTS {}()").format(function))

    [outcome] = await register_customers([doomed], adapter_store, now)
    assert outcome.created and outcome.error is None
    assert number_of(outcome) == CustomerNumber(ym, 2)  # the failed attempt used up no number
    assert await counter(adapter_store, ym) == 2
    assert await numbers_of_month(adapter_store, ym) == [1, 2]
    assert await processed(adapter_store, [doomed.event_id]) == {doomed.event_id: outcome.customer_id}
    assert outcome.customer_id is not None
    events = await registered_events_of(adapter_store, outcome.customer_id)
    assert [event["causationId"] for event in events] == [str(doomed.event_id)]


# -- AC-0002-03-03: customer numbers --------------------------------------------------------------


async def test_ac03_numbers_are_gapless_and_unique_under_concurrent_writers(
    adapter_store: PostgresCustomerStore,
) -> None:
    (month,) = fresh_months()
    ym = year_month(month)
    batches = [[a_user(month + timedelta(minutes=task * 25 + i)) for i in range(25)] for task in range(8)]

    results = await asyncio.wait_for(
        asyncio.gather(*(register_customers(batch, adapter_store, now) for batch in batches)), timeout=60
    )

    outcomes = [outcome for batch in results for outcome in batch]
    assert len(outcomes) == 200
    assert all(outcome.created and outcome.publish and outcome.error is None for outcome in outcomes)
    numbers = [number_of(outcome) for outcome in outcomes]
    assert {number.year_month for number in numbers} == {ym}
    assert sorted(number.sequence for number in numbers) == list(range(1, 201))
    assert await numbers_of_month(adapter_store, ym) == list(range(1, 201))
    assert await counter(adapter_store, ym) == 200
    # a batch takes a contiguous block of numbers, in input order
    for batch in results:
        sequences = [number_of(outcome).sequence for outcome in batch]
        assert sequences == list(range(sequences[0], sequences[0] + 25))


async def test_ac10_concurrent_deliveries_of_the_same_users_create_each_customer_once(
    adapter_store: PostgresCustomerStore,
) -> None:
    """Four workers get the same 20 users (as other eventIds): the losers' conflicts resolve as duplicates."""
    (month,) = fresh_months()
    ym = year_month(month)
    originals = [a_user(month + timedelta(minutes=i)) for i in range(20)]
    batches = [[redelivered(user, event_id=uuid.uuid4()) for user in originals] for _ in range(4)]

    results = await asyncio.wait_for(
        asyncio.gather(*(register_customers(batch, adapter_store, now) for batch in batches)), timeout=60
    )

    for index, user in enumerate(originals):
        per_user = [batch[index] for batch in results]
        assert all(outcome.error is None for outcome in per_user)
        assert sum(outcome.created for outcome in per_user) == 1
        assert len({outcome.customer_id for outcome in per_user}) == 1
        assert len(await customers_of(adapter_store, user.user_id)) == 1
    assert await numbers_of_month(adapter_store, ym) == list(range(1, 21))
    assert await counter(adapter_store, ym) == 20
    all_event_ids = [user.event_id for batch in batches for user in batch]
    assert len(await processed(adapter_store, all_event_ids)) == 80


async def test_ac03_sequence_restarts_at_000001_each_month(adapter_store: PostgresCustomerStore) -> None:
    january, february, march = fresh_months(3)
    jan, feb = year_month(january), year_month(february)
    last_instant_of_january = february - timedelta(microseconds=1)
    # 01:00 at +02:00 on the 1st is still the previous month in UTC
    late_january_elsewhere = (february + timedelta(hours=1)).replace(tzinfo=timezone(timedelta(hours=2)))
    users = [
        a_user(february),
        a_user(january),
        a_user(last_instant_of_january),
        a_user(february + timedelta(days=3)),
        a_user(late_january_elsewhere),
    ]

    outcomes = await register_customers(users, adapter_store, now)

    assert [str(number_of(outcome)) for outcome in outcomes] == [
        f"ACME-{feb}-000001",
        f"ACME-{jan}-000001",
        f"ACME-{jan}-000002",
        f"ACME-{feb}-000002",
        f"ACME-{jan}-000003",
    ]
    assert (await counter(adapter_store, jan), await counter(adapter_store, feb)) == (3, 2)

    [next_month] = await register_customers([a_user(march + timedelta(days=20))], adapter_store, now)
    assert str(number_of(next_month)) == f"ACME-{year_month(march)}-000001"


# -- AC-0002-03-10: idempotency -------------------------------------------------------------------


async def test_ac10_redelivery_creates_nothing_and_returns_the_stored_event(
    adapter_store: PostgresCustomerStore,
) -> None:
    (month,) = fresh_months()
    ym = year_month(month)
    user = a_user(month)

    [first] = await register_customers([user], adapter_store, now)
    [again] = await register_customers([redelivered(user)], adapter_store, now)
    other_event = redelivered(user, event_id=uuid.uuid4())
    [via_other_event] = await register_customers([other_event], adapter_store, now)

    assert first.created and first.customer_id is not None and first.event is not None
    assert (again.created, again.customer_id, again.event, again.error) == (
        False,
        first.customer_id,
        first.event,
        None,
    )
    assert (via_other_event.created, via_other_event.customer_id, via_other_event.event) == (
        False,
        first.customer_id,
        first.event,
    )
    assert via_other_event.input_event_id == other_event.event_id

    assert await customers_of(adapter_store, user.user_id) == [(first.customer_id, f"ACME-{ym}-000001")]
    assert first.event is not None
    assert await registered_events_of(adapter_store, first.customer_id) == [first.event.to_dict()]
    assert await processed(adapter_store, [user.event_id, other_event.event_id]) == {
        user.event_id: first.customer_id,
        other_event.event_id: first.customer_id,
    }
    preferences = await rows(
        adapter_store, "SELECT count(*) FROM customer_preferences WHERE customer_id = %s", (first.customer_id,)
    )
    assert preferences == [(1,)]
    assert await counter(adapter_store, ym) == 1


async def test_duplicates_within_one_batch_create_one_customer(adapter_store: PostgresCustomerStore) -> None:
    (month,) = fresh_months()
    ym = year_month(month)
    twice = a_user(month)
    two_events = a_user(month + timedelta(minutes=1))
    second_event = redelivered(two_events, event_id=uuid.uuid4())

    outcomes = await register_customers([twice, redelivered(twice), two_events, second_event], adapter_store, now)

    assert [(o.created, o.publish, o.error) for o in outcomes] == [
        (True, True, None),
        (False, False, None),
        (True, True, None),
        (False, False, None),
    ]
    assert outcomes[1].customer_id == outcomes[0].customer_id
    assert outcomes[1].event == outcomes[0].event
    assert outcomes[3].customer_id == outcomes[2].customer_id
    assert outcomes[3].event == outcomes[2].event
    assert [number_of(outcome).sequence for outcome in outcomes] == [1, 1, 2, 2]
    assert len(await customers_of(adapter_store, twice.user_id)) == 1
    assert len(await customers_of(adapter_store, two_events.user_id)) == 1
    assert await processed(adapter_store, [twice.event_id, two_events.event_id, second_event.event_id]) == {
        twice.event_id: outcomes[0].customer_id,
        two_events.event_id: outcomes[2].customer_id,
        second_event.event_id: outcomes[2].customer_id,
    }
    assert await counter(adapter_store, ym) == 2


async def _orphan_customer_with_the_same_user(store: PostgresCustomerStore, user: UserRegistered) -> None:
    """A customers row for the user without its CustomerRegistered event (e.g. a legacy import)."""
    async with store.pool.connection() as connection:
        await connection.execute(
            "INSERT INTO customers (id, user_id, customer_number, first_name, last_name, display_name, email,"
            " registered_at, last_activity_at) VALUES (%s, %s, %s, 'Old', 'Row', 'Old Row', 'old@example.com',"
            " %s, %s)",
            (uuid.uuid4(), user.user_id, f"ACME-LEGACY-{user.user_id.hex[:8]}", user.registered_at, user.registered_at),
        )


async def _processed_row_without_customer(store: PostgresCustomerStore, user: UserRegistered) -> None:
    """A processed_events row for the input eventId that points at no customer (customer_id is nullable)."""
    async with store.pool.connection() as connection:
        await connection.execute(
            "INSERT INTO processed_events (event_id, event_type, customer_id) VALUES (%s, 'UserRegistered', NULL)",
            (user.event_id,),
        )


@pytest.mark.parametrize(
    "conflict",
    [_orphan_customer_with_the_same_user, _processed_row_without_customer],
    ids=["customers.user_id", "processed_events.event_id"],
)
async def test_a_conflicting_record_is_isolated_and_its_neighbours_commit(
    adapter_store: PostgresCustomerStore, conflict: Any
) -> None:
    """A uniqueness conflict that persists when the record is redone alone.

    Expected: the neighbours commit (gapless numbers: the refused record gives its number back) and
    the refused record comes back with a PermanentError, so that the handler dead-letters it.
    """
    (month,) = fresh_months()
    ym = year_month(month)
    before, bad, after = (a_user(month + timedelta(minutes=i)) for i in range(3))
    await conflict(adapter_store, bad)

    outcomes = await register_customers([before, bad, after], adapter_store, now)

    assert [(o.created, o.error is None) for o in outcomes] == [(True, True), (False, False), (True, True)]
    assert isinstance(outcomes[1].error, PermanentError)
    assert outcomes[1].customer_id is None and not outcomes[1].publish
    assert [number_of(outcomes[0]).sequence, number_of(outcomes[2]).sequence] == [1, 2]
    assert await numbers_of_month(adapter_store, ym) == [1, 2]
    assert await counter(adapter_store, ym) == 2
    for user in (before, after):
        assert len(await customers_of(adapter_store, user.user_id)) == 1


async def test_unpublished_event_is_republished_on_redelivery_until_marked_published(
    adapter_store: PostgresCustomerStore,
) -> None:
    (month,) = fresh_months()
    user = a_user(month)

    [first] = await register_customers([user], adapter_store, now)
    [second] = await register_customers([redelivered(user)], adapter_store, now)
    assert (first.created, first.publish) == (True, True)
    assert (second.created, second.publish, second.event) == (False, True, first.event)

    assert first.event is not None
    customer_event_id = first.event.event_id
    await adapter_store.mark_published([customer_event_id])
    published = await rows(
        adapter_store, "SELECT published_at FROM event_store WHERE event_id = %s", (customer_event_id,)
    )
    assert published[0][0] is not None

    [third] = await register_customers([redelivered(user)], adapter_store, now)
    [other_event] = await register_customers([redelivered(user, event_id=uuid.uuid4())], adapter_store, now)
    assert (third.created, third.publish, third.event) == (False, False, first.event)
    assert (other_event.created, other_event.publish) == (False, False)


# -- the projection's source ----------------------------------------------------------------------


async def test_ac07_profiles_load_the_stored_customer_with_its_preferences(
    adapter_store: PostgresCustomerStore,
) -> None:
    (month,) = fresh_months()
    ym = year_month(month)
    opted_in = a_user(month + timedelta(seconds=1, microseconds=250_000), marketing_opt_in=True)
    opted_out = a_user(month + timedelta(seconds=2))
    outcomes = await register_customers([opted_in, opted_out], adapter_store, now)
    ids = [outcome.customer_id for outcome in outcomes]
    assert None not in ids

    loaded = {customer.customer_id: customer for customer in await PostgresProfiles(adapter_store.pool).customers(ids)}

    def expected(user: UserRegistered, customer_id: UUID | None, sequence: int) -> Customer:
        assert customer_id is not None
        return Customer(
            customer_id=customer_id,
            user_id=user.user_id,
            customer_number=CustomerNumber(ym, sequence),
            first_name=user.first_name,
            last_name=user.last_name,
            email=user.email,
            registered_at=user.registered_at,
            last_activity_at=user.registered_at,
            preferences=Preferences(marketing=user.marketing_opt_in),
        )

    assert loaded == {
        ids[0]: expected(opted_in, ids[0], 1),
        ids[1]: expected(opted_out, ids[1], 2),
    }
    assert loaded[ids[0]].preferences.marketing is True
    assert loaded[ids[1]].preferences.marketing is False
    assert loaded[ids[0]].profile_completeness == 25
    assert await PostgresProfiles(adapter_store.pool).customers([uuid.uuid4()]) == []


async def test_a_connection_broken_before_the_unit_of_work_opens_goes_back_to_the_pool(adapter_pg_url: str) -> None:
    """A connection that breaks between the pool's check and the pipeline's start is handed back
    (the pool replaces a broken one), and the caller gets an outage to retry, not a driver error."""
    broken = await psycopg.AsyncConnection.connect(adapter_pg_url)
    await broken.close()

    class OnePool:  # the failure injected at that exact moment: the pool hands out a closed connection
        def __init__(self) -> None:
            self.returned: list[Any] = []

        async def getconn(self) -> Any:
            return broken

        async def putconn(self, connection: Any) -> None:
            self.returned.append(connection)

    pool = OnePool()
    with pytest.raises(StoreUnavailable):
        async with PostgresUnitOfWork(pool):  # type: ignore[arg-type]
            raise AssertionError("the unit of work must not open on a closed connection")
    assert pool.returned == [broken]


async def _backend_pid(store: PostgresCustomerStore) -> int:
    async with store.pool.connection() as connection:
        row = await (await connection.execute("SELECT pg_backend_pid()")).fetchone()
    assert row is not None
    return int(row[0])


async def _terminate(database_url: str, pid: int) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as admin:
        row = await (await admin.execute("SELECT pg_terminate_backend(%s)", (pid,))).fetchone()
    assert row == (True,)


async def test_a_connection_lost_right_after_use_is_an_outage_to_retry_then_replaced(
    adapter_pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pool skips its check for a connection handed out less than a second ago (a round trip
    saved per transaction when busy): if the server ended its session meanwhile, the first
    statement fails as an outage, which is retried, and the pool replaces the connection."""
    monkeypatch.setattr(postgres._CheckWhenIdle, "IDLE_S", 600.0)  # the clock: however slow this machine is
    async with opened_store(adapter_pg_url, max_size=1) as store:
        pid = await _backend_pid(store)
        await _terminate(adapter_pg_url, pid)
        with pytest.raises(StoreUnavailable):
            await store.mark_published([uuid.uuid4()])
        assert await _backend_pid(store) != pid  # the retry gets a new session


async def test_a_connection_lost_while_idle_in_the_pool_is_replaced_before_use(
    adapter_pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection idle for longer than the check's threshold is checked at checkout, as psycopg_pool
    does by default: a session the server ended meanwhile never reaches a caller."""
    monkeypatch.setattr(postgres._CheckWhenIdle, "IDLE_S", 0.0)  # the clock: every connection counts as idle
    async with opened_store(adapter_pg_url, max_size=1) as store:
        pid = await _backend_pid(store)
        await _terminate(adapter_pg_url, pid)
        await store.mark_published([uuid.uuid4()])  # no error: the check found the lost session
        assert await _backend_pid(store) != pid
