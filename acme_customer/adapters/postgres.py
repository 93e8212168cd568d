"""PostgreSQL: the command store and the event store, behind the unit-of-work port.

psycopg errors are mapped here, once: lost connections, failovers, serialization failures
and deadlocks are transient; a uniqueness violation is a conflict (the record is redone
alone); any other refusal of the data is permanent for that record; a refusal of the
statement itself (a defect) is neither, and the handlers isolate it record by record.
"""

from __future__ import annotations

import contextlib
import functools
import operator
import time
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, ClassVar
from uuid import UUID

import psycopg
from opentelemetry import trace
from psycopg import errors as pg_errors
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from acme_customer.domain.customer import Customer, Preferences
from acme_customer.domain.customer_number import CustomerNumber
from acme_customer.domain.events import CUSTOMER_REGISTERED, EVENT_VERSION, CustomerRegistered
from acme_customer.errors import RecordRejected, StoreConflict, StoreDefect, StoreUnavailable
from acme_customer.service_layer.ports import CustomerStore, CustomerUnitOfWork, KnownRegistrations, StoredRegistration
from acme_customer.service_layer.project_customers import ProfileSource

tracer = trace.get_tracer("acme_customer")


# SQLSTATE classes that say the server or the connection failed, not the statement:
# 08 connection, 53 insufficient resources, 57 operator intervention (shutdown, statement
# timeout, cancel), 58 system error, 40 transaction rollback (serialization, deadlock),
# 55 object not in prerequisite state (lock not available)
_TRANSIENT_CLASSES = ("08", "53", "57", "58", "40", "55")


def translate(error: Exception) -> Exception:
    """Our error for a driver error (see the module docstring)."""
    if isinstance(error, pg_errors.UniqueViolation):
        return StoreConflict(f"uniqueness conflict: {error.diag.constraint_name}")
    if isinstance(error, pg_errors.PipelineAborted):
        # a statement after a failed one in the same pipeline: the failure itself was raised first;
        # should this ever surface alone, the handlers isolate the batch record by record
        return StoreDefect("PostgreSQL skipped a statement after an earlier failure in its pipeline")
    if isinstance(error, (pg_errors.DataError, pg_errors.IntegrityError)):
        return RecordRejected(f"PostgreSQL refused the record: {type(error).__name__}")
    sqlstate = getattr(error, "sqlstate", None) or ""
    if isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError)) or sqlstate[:2] in _TRANSIENT_CLASSES:
        return StoreUnavailable(f"PostgreSQL unavailable: {type(error).__name__}")
    # ProgrammingError (syntax, undefined table, privilege), NotSupportedError, InternalError,
    # anything unknown: retrying the same statement cannot help, and it is not the data's fault
    return StoreDefect(f"PostgreSQL refused the statement: {type(error).__name__} ({sqlstate or 'no SQLSTATE'})")


def connection_failed(error: psycopg.Error) -> Exception:
    """Our error for a failed connection or operator statement, with the driver's first line.

    For operators (start-up, the CLI): libpq's reason names the host and port and why
    ("Connection refused", "password authentication failed for user …"), never a password.
    """
    if isinstance(error, psycopg.OperationalError):
        lines = str(error).strip().splitlines()
        return StoreUnavailable(f"PostgreSQL unavailable: {lines[0] if lines else type(error).__name__}")
    return translate(error)


async def server_version(database_url: str, timeout: int = 5) -> str:
    """The server's version, asked over a connection of its own (``config check --connect``)."""
    try:
        async with await psycopg.AsyncConnection.connect(database_url, connect_timeout=timeout) as connection:
            row = await (await connection.execute("SHOW server_version")).fetchone()
    except psycopg.Error as error:
        raise connection_failed(error) from error
    return str(row[0]) if row else "?"


@asynccontextmanager
async def _translated() -> AsyncIterator[None]:
    try:
        yield
    except psycopg.Error as error:
        raise translate(error) from error
    except UnicodeEncodeError as error:  # text the connection's encoding cannot carry
        raise RecordRejected("PostgreSQL cannot store the record's text: not valid Unicode") from error


# table -> the stored CustomerRegistered of each customer the table links a key to (eventId, userId)
_LOOKUPS = {
    table: f"SELECT t.{key}, e.aggregate_id, e.envelope, e.published_at IS NOT NULL FROM {table} t"
    f" JOIN event_store e ON e.aggregate_id = t.{customer_column} AND e.event_type = %s WHERE t.{key} = ANY(%s)"
    for table, key, customer_column in (("processed_events", "event_id", "customer_id"), ("customers", "user_id", "id"))
}


def _registrations(rows: Sequence[tuple[Any, ...]]) -> dict[UUID, StoredRegistration]:
    return {row[0]: StoredRegistration(row[1], CustomerRegistered.from_dict(row[2]), row[3]) for row in rows}


class PostgresUnitOfWork(CustomerUnitOfWork):
    def __init__(self, pool: AsyncConnectionPool[Any]):
        self._pool = pool
        self._connection: psycopg.AsyncConnection[Any] | None = None
        self._pipeline: Any = None  # psycopg's AsyncPipeline, while the unit of work is open
        self._done = False

    async def __aenter__(self) -> PostgresUnitOfWork:
        try:
            self._connection = await self._pool.getconn()
        except psycopg.Error as error:
            raise translate(error) from error
        except Exception as error:  # pool timeout: PostgreSQL unreachable
            raise StoreUnavailable(f"no PostgreSQL connection: {type(error).__name__}") from error
        # Pipeline mode: statements whose results nobody waits for (BEGIN, the inserts) travel
        # with the next one that is waited for (the lookups, the COMMIT): a batch costs three
        # round trips (BEGIN and both lookups; the counter; the inserts and the COMMIT), not nine.
        # A refused insert raises at the COMMIT, as the statement's own error.
        try:
            self._pipeline = self._connection.pipeline()
            await self._pipeline.__aenter__()
        except psycopg.Error as error:  # a connection broken since the pool's check: back to the pool
            await self._pool.putconn(self._connection)
            self._connection = None
            raise translate(error) from error
        return self

    async def __aexit__(self, kind: Any, error: Any, trace_: Any) -> None:
        try:
            await self.rollback()
            with contextlib.suppress(psycopg.Error):  # an aborted or broken pipeline: the rollback said it
                await self._pipeline.__aexit__(None, None, None)
        finally:
            if self._connection is not None:
                await self._pool.putconn(self._connection)
                self._connection = None

    @property
    def connection(self) -> psycopg.AsyncConnection[Any]:
        assert self._connection is not None, "use the unit of work in an 'async with' block"
        return self._connection

    async def _rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        async with _translated(), self.connection.cursor(row_factory=tuple_row) as cursor:
            await cursor.execute(sql, params)
            return await cursor.fetchall()

    async def known_registrations(self, event_ids: Sequence[UUID], user_ids: Sequence[UUID]) -> KnownRegistrations:
        async with (
            _translated(),
            self.connection.cursor(row_factory=tuple_row) as by_event,
            self.connection.cursor(row_factory=tuple_row) as by_user,
        ):
            # both lookups are sent before either result is read: one round trip (pipeline mode)
            for cursor, table, keys in ((by_event, "processed_events", event_ids), (by_user, "customers", user_ids)):
                if keys:
                    await cursor.execute(_LOOKUPS[table], (CUSTOMER_REGISTERED, list(keys)))
            return KnownRegistrations(
                _registrations(await by_event.fetchall()) if event_ids else {},
                _registrations(await by_user.fetchall()) if user_ids else {},
            )

    async def reserve_customer_numbers(self, year_month: str, count: int) -> int:
        # The row lock taken here is held to commit: writers of one month queue up, and a
        # rollback returns the numbers, so the sequence has no gaps.
        rows = await self._rows(
            "INSERT INTO customer_number_sequences AS s (year_month, current_value) VALUES (%s, %s)"
            " ON CONFLICT (year_month) DO UPDATE SET current_value = s.current_value + EXCLUDED.current_value"
            " RETURNING current_value",
            (year_month, count),
        )
        return int(rows[0][0])

    async def add_customers(self, customers: Sequence[Customer]) -> None:
        with tracer.start_as_current_span("persist_customer") as span:
            span.set_attribute("db.system", "postgresql")
            span.set_attribute("customer.count", len(customers))
            async with _translated(), self.connection.cursor() as cursor:
                await cursor.execute(_CUSTOMERS.sql, _CUSTOMERS.arrays(customers))
                await cursor.execute(_PREFERENCES_ROWS.sql, _PREFERENCES_ROWS.arrays(customers))

    async def append_events(self, events: Sequence[CustomerRegistered]) -> None:
        with tracer.start_as_current_span("persist_event") as span:
            span.set_attribute("db.system", "postgresql")
            span.set_attribute("event.count", len(events))
            async with _translated(), self.connection.cursor() as cursor:
                await cursor.execute(_EVENTS.sql, _EVENTS.arrays(events))

    async def mark_processed(self, processed: Sequence[tuple[UUID, UUID]]) -> None:
        if not processed:
            return
        async with _translated(), self.connection.cursor() as cursor:
            await cursor.execute(_PROCESSED.sql, _PROCESSED.arrays(processed))

    async def commit(self) -> None:
        async with _translated():
            await self.connection.commit()
        self._done = True

    async def rollback(self) -> None:
        if self._connection is None or self._done:
            return
        # a broken connection cannot roll back; the server discards the transaction anyway
        with contextlib.suppress(psycopg.Error):
            await self._connection.rollback()
        self._done = True


class _CheckWhenIdle:
    """The pool's check at checkout, only for a connection not handed out in the last ``IDLE_S``.

    psycopg_pool's ``check_connection`` costs a round trip (and two autocommit switches) at every
    checkout: three per event in per-event mode (the registration, ``mark_published``, the
    projector's read). A connection handed out less than a second ago was working then, and the
    pool discards one returned broken; should the server have gone since, its first statement
    fails as a lost connection, which is transient (the batch is retried, the connection dropped).
    """

    IDLE_S: ClassVar[float] = 1.0
    _handed_out: ClassVar[weakref.WeakKeyDictionary[Any, float]] = weakref.WeakKeyDictionary()

    @classmethod
    async def check(cls, connection: psycopg.AsyncConnection[Any]) -> None:
        now = time.monotonic()
        last = cls._handed_out.get(connection)
        if connection.closed or last is None or now - last >= cls.IDLE_S:
            await AsyncConnectionPool.check_connection(connection)
        cls._handed_out[connection] = now


class PostgresCustomerStore(CustomerStore):
    """Connection pool over the command store."""

    def __init__(self, pool: AsyncConnectionPool[Any]):
        self.pool = pool

    @classmethod
    def create(cls, database_url: str, max_size: int = 4) -> PostgresCustomerStore:
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            database_url,
            min_size=1,
            max_size=max_size,
            open=False,
            timeout=10.0,
            kwargs={"autocommit": False},
            check=_CheckWhenIdle.check,
        )
        return cls(pool)

    async def open(self) -> None:
        await self.pool.open(wait=False)

    async def close(self) -> None:
        await self.pool.close()

    def unit_of_work(self) -> PostgresUnitOfWork:
        return PostgresUnitOfWork(self.pool)

    async def mark_published(self, event_ids: Sequence[UUID]) -> None:
        if not event_ids:
            return
        try:
            async with self.pool.connection() as connection, connection.pipeline():
                # No wait for the WAL's fsync: the mark is a note, not a fact to keep. Lost only
                # if PostgreSQL itself crashes within ~0.6 s, it leaves the event looking unpublished,
                # as a worker killed between Kafka's acknowledgement and this statement does; a
                # redelivery or `reconcile` publishes it again, with the same eventId.
                await connection.execute("SET LOCAL synchronous_commit = off")
                await connection.execute(
                    "UPDATE event_store SET published_at = NOW() WHERE event_id = ANY(%s) AND published_at IS NULL",
                    (list(event_ids),),
                )
                await connection.commit()  # BEGIN, SET, UPDATE, COMMIT: one round trip
        except psycopg.Error as error:
            raise translate(error) from error

    async def ping(self) -> bool:
        try:
            async with self.pool.connection(timeout=2.0) as connection:
                await connection.execute("SELECT 1")
            return True
        except Exception:
            return False


# What ``customer_of`` reads: ``customers c`` joined with ``customer_preferences p``
PROFILE_COLUMNS = (
    "c.id AS customer_id, c.user_id, c.customer_number, c.first_name, c.last_name, c.email,"
    " c.registered_at, c.last_activity_at, c.email_verified, c.status, c.type, c.preferred_locale,"
    " c.timezone, c.preferred_currency, p.email_notifications AS pref_email,"
    " p.sms_notifications AS pref_sms, p.push_notifications AS pref_push,"
    " p.marketing_communications AS pref_marketing,"
    " p.share_data_with_partners AS pref_share_data_with_partners,"
    " p.allow_analytics AS pref_allow_analytics"
)


class PostgresProfiles(ProfileSource):
    """Loads customers (with preferences) for the read-model projection."""

    def __init__(self, pool: AsyncConnectionPool[Any]):
        self.pool = pool

    async def customers(self, customer_ids: Sequence[UUID]) -> list[Customer]:
        try:
            async with (
                self.pool.connection() as connection,
                connection.pipeline(),
                connection.cursor(row_factory=dict_row) as cursor,
            ):
                await cursor.execute(
                    f"SELECT {PROFILE_COLUMNS} FROM customers c JOIN customer_preferences p ON p.customer_id = c.id"
                    " WHERE c.id = ANY(%(ids)s)",
                    {"ids": list(customer_ids)},
                )
                await connection.commit()  # BEGIN, SELECT, COMMIT: one round trip; the rows stay with the cursor
                rows = await cursor.fetchall()
        except psycopg.Error as error:
            raise translate(error) from error
        return [customer_of(row) for row in rows]


@dataclass(frozen=True)
class _RowsInsert:
    """One ``INSERT … SELECT FROM unnest(…)`` for many rows: a statement per table and batch.

    Each column is sent as one array (``columns``: name, PostgreSQL type, how to read it from
    an item), so a batch of 100 is one statement and one round trip, not 100 executions.
    """

    table: str
    columns: tuple[tuple[str, str, Callable[[Any], Any]], ...]
    constants: tuple[tuple[str, str], ...] = ()  # columns with the same SQL value in every row

    @functools.cached_property
    def sql(self) -> str:
        names = [name for name, _, _ in self.columns] + [name for name, _ in self.constants]
        arrays = ", ".join(f"%b::{kind}[]" for _, kind, _ in self.columns)  # binary: no text escaping
        values = ", ".join(["u.*", *(value for _, value in self.constants)])
        return f"INSERT INTO {self.table} ({', '.join(names)}) SELECT {values} FROM unnest({arrays}) AS u"

    def arrays(self, items: Sequence[Any]) -> list[list[Any]]:
        return [[read(item) for item in items] for _, _, read in self.columns]


def _column(name: str, kind: str, attribute: str | None = None) -> tuple[str, str, Callable[[Any], Any]]:
    """A column read from the item's attribute of the same name (or ``attribute``, dotted)."""
    return (name, kind, operator.attrgetter(attribute or name))


_CUSTOMERS = _RowsInsert(
    "customers",
    (
        _column("id", "uuid", "customer_id"),
        _column("user_id", "uuid"),
        ("customer_number", "text", lambda c: str(c.customer_number)),
        *(_column(name, "text") for name in ("first_name", "last_name", "display_name", "email")),
        _column("email_verified", "boolean"),
        *(_column(name, "text") for name in ("status", "type", "preferred_locale", "timezone", "preferred_currency")),
        _column("profile_completeness", "integer"),
        _column("registered_at", "timestamptz"),
        _column("last_activity_at", "timestamptz"),
    ),
)

# the preferences' names in the domain, and their columns
_PREFERENCES = {
    "email": "email_notifications",
    "sms": "sms_notifications",
    "push": "push_notifications",
    "marketing": "marketing_communications",
    "share_data_with_partners": "share_data_with_partners",
    "allow_analytics": "allow_analytics",
}

_PREFERENCES_ROWS = _RowsInsert(
    "customer_preferences",
    (
        _column("customer_id", "uuid"),
        *(_column(column, "boolean", f"preferences.{name}") for name, column in _PREFERENCES.items()),
    ),
)

_EVENTS = _RowsInsert(
    "event_store",
    (
        _column("event_id", "uuid"),
        _column("aggregate_id", "uuid", "customer_id"),
        _column("correlation_id", "uuid"),
        _column("causation_id", "uuid"),
        _column("occurred_at", "timestamptz", "timestamp"),
        ("envelope", "jsonb", lambda e: Jsonb(e.to_dict())),
    ),
    constants=(
        ("event_type", f"'{CUSTOMER_REGISTERED}'"),
        ("event_version", f"'{EVENT_VERSION}'"),
        ("aggregate_type", "'Customer'"),
        ("aggregate_version", "1"),
    ),
)

_PROCESSED = _RowsInsert(
    "processed_events",
    (("event_id", "uuid", lambda pair: pair[0]), ("customer_id", "uuid", lambda pair: pair[1])),
    constants=(("event_type", "'UserRegistered'"),),
)


def customer_of(row: dict[str, Any]) -> Customer:
    """A customer from a ``customers`` row joined with its preferences (``pref_``-prefixed)."""
    fields = {name: value for name, value in row.items() if not name.startswith("pref_")}
    fields["customer_number"] = CustomerNumber.parse(fields["customer_number"])
    preferences = Preferences(**{name: row[f"pref_{name}"] for name in _PREFERENCES})
    return Customer(**fields, preferences=preferences)


async def registration_pages(
    pool: AsyncConnectionPool[Any], page_size: int = 500
) -> AsyncIterator[list[dict[str, Any]]]:
    """Every CustomerRegistered envelope in the event store, in pages, in the order stored."""
    after: tuple[Any, Any] | None = None
    while True:
        try:
            async with pool.connection() as connection, connection.cursor(row_factory=tuple_row) as cursor:
                await cursor.execute(
                    "SELECT stored_at, event_id, envelope FROM event_store WHERE event_type = %s"
                    + (" AND (stored_at, event_id) > (%s, %s)" if after else "")
                    + " ORDER BY stored_at, event_id LIMIT %s",
                    (CUSTOMER_REGISTERED, *(after or ()), page_size),
                )
                rows = await cursor.fetchall()
        except psycopg.Error as error:
            raise translate(error) from error
        if not rows:
            return
        yield [row[2] for row in rows]
        after = (rows[-1][0], rows[-1][1])
