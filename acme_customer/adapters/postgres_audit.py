"""PostgreSQL read for ``verify`` in pages (keyset on the primary key), and the counter repair of ``reconcile``.

One autocommit connection: each page is a statement of its own, so a walk over millions of
customers holds no snapshot and no lock for long, and workers go on meanwhile.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import dict_row

from acme_customer.adapters.postgres import PROFILE_COLUMNS, connection_failed, customer_of
from acme_customer.domain.customer_number import PREFIX
from acme_customer.domain.events import CUSTOMER_REGISTERED, CustomerRegistered
from acme_customer.errors import StoreDefect
from acme_customer.service_layer.verify_stores import CommandStoreAudit, CustomerState

PAGE_SIZE = 5000
_AFTER = "{after}"  # where a page's keyset condition goes

# a customer with what the event store holds for it (the primary-key-led index serves the lateral join)
_STATE = (
    "p.customer_id IS NOT NULL AS has_preferences, e.events, e.unpublished"
    " FROM customers c LEFT JOIN customer_preferences p ON p.customer_id = c.id"
    " CROSS JOIN LATERAL (SELECT count(*) AS events,"
    "  coalesce(array_agg(s.event_id) FILTER (WHERE s.published_at IS NULL), ARRAY[]::uuid[]) AS unpublished"
    "  FROM event_store s WHERE s.aggregate_id = c.id AND s.event_type = %(event_type)s) e"
)
_STATE_KEYS = ("has_preferences", "events", "unpublished")


class PostgresAudit(CommandStoreAudit):
    def __init__(self, connection: psycopg.AsyncConnection[Any], page_size: int = PAGE_SIZE):
        self.connection = connection
        self.page_size = page_size

    @classmethod
    async def connect(cls, database_url: str, page_size: int = PAGE_SIZE) -> PostgresAudit:
        try:
            connection = await psycopg.AsyncConnection.connect(database_url, autocommit=True, connect_timeout=10)
        except psycopg.Error as error:
            raise connection_failed(error) from error
        return cls(connection, page_size)

    async def close(self) -> None:
        await self.connection.close()

    async def _rows(self, sql: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        try:
            async with self.connection.cursor(row_factory=dict_row) as cursor:
                await cursor.execute(sql.encode(), params)
                return await cursor.fetchall()
        except pg_errors.UndefinedTable as error:
            raise StoreDefect(
                f"PostgreSQL: {error.diag.message_primary} (is the schema migrated? acme-customer migrate)"
            ) from error
        except psycopg.Error as error:
            raise connection_failed(error) from error

    async def _pages(
        self, sql: str, params: Mapping[str, Any], key: str, after_sql: str
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """The rows of ``sql`` page by page, each page the rows after the last one's ``key``."""
        after = None
        while True:
            rows = await self._rows(
                sql.replace(_AFTER, after_sql if after is not None else ""),
                {**params, "after": after, "page_size": self.page_size},
            )
            if rows:
                yield rows
            if len(rows) < self.page_size:
                return
            after = rows[-1][key]

    async def customer_pages(self, since: str | None) -> AsyncIterator[list[CustomerState]]:
        # by id; from a month on, by number instead: the unique index on numbers reads only those months
        key = "customer_number" if since else "customer_id"
        column = "c.customer_number" if since else "c.id"
        sql = (
            f"SELECT c.id AS customer_id, c.customer_number, {_STATE} WHERE TRUE {_AFTER}"
            + (" AND c.customer_number >= %(since)s" if since else "")
            + f" ORDER BY {column} LIMIT %(page_size)s"
        )
        params = {"event_type": CUSTOMER_REGISTERED, "since": _number_prefix(since)}
        async for rows in self._pages(sql, params, key, f" AND {column} > %(after)s"):
            yield [_state(row) for row in rows]

    async def customers(self, customer_ids: Sequence[UUID]) -> dict[UUID, CustomerState]:
        if not customer_ids:
            return {}
        rows = await self._rows(
            f"SELECT {PROFILE_COLUMNS}, {_STATE} WHERE c.id = ANY(%(ids)s)",
            {"event_type": CUSTOMER_REGISTERED, "ids": list(customer_ids)},
        )
        states = {}
        for row in rows:
            profile = {name: value for name, value in row.items() if name not in _STATE_KEYS}
            customer = customer_of(profile) if row["has_preferences"] else None
            states[row["customer_id"]] = _state(row, customer)
        return states

    async def orphan_event_pages(self, since: str | None) -> AsyncIterator[tuple[int, list[UUID]]]:
        sql = (
            "SELECT s.event_id, c.id IS NULL AS orphan FROM (SELECT event_id, aggregate_id FROM event_store"
            f" WHERE event_type = %(event_type)s {_AFTER}"
            + (" AND envelope->'payload'->>'customerNumber' >= %(since)s" if since else "")
            + " ORDER BY event_id LIMIT %(page_size)s) s"
            " LEFT JOIN customers c ON c.id = s.aggregate_id ORDER BY s.event_id"
        )
        params = {"event_type": CUSTOMER_REGISTERED, "since": _number_prefix(since)}
        async for rows in self._pages(sql, params, "event_id", " AND event_id > %(after)s"):
            yield len(rows), [row["event_id"] for row in rows if row["orphan"]]

    async def orphan_processed_pages(self, since: str | None) -> AsyncIterator[tuple[int, list[UUID]]]:
        sql = (
            "SELECT p.event_id, (p.customer_id IS NULL OR c.id IS NULL) AS orphan FROM"
            f" (SELECT event_id, customer_id FROM processed_events WHERE TRUE {_AFTER}"
            + (" AND processed_at >= %(since)s" if since else "")
            + " ORDER BY event_id LIMIT %(page_size)s) p"
            " LEFT JOIN customers c ON c.id = p.customer_id ORDER BY p.event_id"
        )
        params = {"since": _month_start(since)}
        async for rows in self._pages(sql, params, "event_id", " AND event_id > %(after)s"):
            yield len(rows), [row["event_id"] for row in rows if row["orphan"]]

    async def counters(self, since: str | None) -> dict[str, int]:
        rows = await self._rows(
            "SELECT year_month, current_value FROM customer_number_sequences"
            + (" WHERE year_month >= %(since)s" if since else ""),
            {"since": since},
        )
        return {row["year_month"]: int(row["current_value"]) for row in rows}

    async def unpublished_events(self, event_ids: Sequence[UUID]) -> list[CustomerRegistered]:
        rows = await self._rows(
            "SELECT envelope FROM event_store WHERE event_id = ANY(%(ids)s) AND published_at IS NULL"
            " ORDER BY stored_at, event_id",
            {"ids": list(event_ids)},
        )
        return [CustomerRegistered.from_dict(row["envelope"]) for row in rows]

    async def existing(self, customer_ids: Sequence[UUID]) -> set[UUID]:
        rows = await self._rows("SELECT id FROM customers WHERE id = ANY(%(ids)s)", {"ids": list(customer_ids)})
        return {row["id"] for row in rows}

    async def raise_counters(self, highest: dict[str, int]) -> int:
        changed = 0
        for year_month, number in sorted(highest.items()):
            # the condition is checked on the row as locked: a worker's reservation made meanwhile is never lowered
            rows = await self._rows(
                "INSERT INTO customer_number_sequences AS s (year_month, current_value) VALUES (%(month)s, %(value)s)"
                " ON CONFLICT (year_month) DO UPDATE SET current_value = EXCLUDED.current_value"
                " WHERE s.current_value < EXCLUDED.current_value RETURNING current_value",
                {"month": year_month, "value": number},
            )
            changed += len(rows)
        return changed


def _state(row: Mapping[str, Any], customer: Any = None) -> CustomerState:
    return CustomerState(
        customer_id=row["customer_id"],
        customer_number=row["customer_number"],
        has_preferences=row["has_preferences"],
        events=int(row["events"]),
        unpublished=tuple(row["unpublished"]),
        customer=customer,
    )


def _number_prefix(since: str | None) -> str | None:
    """The customer numbers of the months from ``since`` on sort at or after this text."""
    return f"{PREFIX}-{since}" if since else None


def _month_start(since: str | None) -> datetime | None:
    return datetime(int(since[:4]), int(since[4:]), 1, tzinfo=UTC) if since else None
