"""Fixtures for the adapter integration tests: a fresh PostgreSQL database and MongoDB database per module.

Each test module that asks for them gets its own, uniquely named databases on the running local
stack (migrated PostgreSQL database, empty MongoDB database with the read model's indexes); both
are dropped when the module is done, so suites can run side by side against the same servers.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import pytest_asyncio
from psycopg import sql
from pymongo import MongoClient

from acme_customer.adapters.migrations import apply_migrations
from acme_customer.adapters.mongo import MongoReadModel
from acme_customer.adapters.postgres import PostgresCustomerStore


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def _with_database(database_url: str, name: str) -> str:
    parts = urlsplit(database_url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="module")
def adapter_pg_url(database_url: str) -> Iterator[str]:
    """A URL to a new, migrated PostgreSQL database of this module only (dropped afterwards)."""
    name = _unique("it_adapters")
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = _with_database(database_url, name)
    try:
        apply_migrations(url)
        yield url
    finally:
        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            left = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        assert left is None, f"database {name} was not dropped"


@contextlib.asynccontextmanager
async def opened_store(database_url: str, max_size: int) -> AsyncIterator[PostgresCustomerStore]:
    """The command store over ``database_url``, its pool open for the block and closed after it."""
    store = PostgresCustomerStore.create(database_url, max_size=max_size)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@pytest_asyncio.fixture(scope="module")
async def adapter_store(adapter_pg_url: str) -> AsyncIterator[PostgresCustomerStore]:
    """The command store over this module's database; the pool is large enough for concurrent writers."""
    async with opened_store(adapter_pg_url, max_size=10) as store:
        yield store


@pytest.fixture(scope="module")
def adapter_mongo_db(mongodb_uri: str) -> Iterator[str]:
    """A MongoDB database name of this module only (dropped afterwards)."""
    name = _unique("it_adapters")
    yield name
    client: MongoClient[dict[str, Any]] = MongoClient(mongodb_uri, serverSelectionTimeoutMS=5000)
    try:
        client.drop_database(name)
        assert name not in client.list_database_names(), f"database {name} was not dropped"
    finally:
        client.close()


@pytest_asyncio.fixture(scope="module")
async def adapter_read_model(mongodb_uri: str, adapter_mongo_db: str) -> AsyncIterator[MongoReadModel]:
    """The read model over this module's MongoDB database, with its indexes."""
    read_model = MongoReadModel.create(mongodb_uri, adapter_mongo_db)
    try:
        await read_model.ensure_indexes()
        yield read_model
    finally:
        await read_model.close()
