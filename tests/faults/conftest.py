"""Fixtures of the fault-injection suite: a fresh PostgreSQL and MongoDB database per test, and a
``Run`` whose workers are always stopped (and whose stopped components are started) afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from pymongo import MongoClient

from acme_customer.adapters.topics import ensure_topics
from tests.e2e.conftest import Stack, _with_database
from tests.faults.harness import Run, component_running, devstack


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "faults: fault injection against the real local stack (slow)")


@pytest.fixture(scope="session")
def topics(kafka_bootstrap: str) -> None:
    asyncio.run(ensure_topics(kafka_bootstrap))


@pytest.fixture
def fault_stack(database_url: str, mongodb_uri: str, topics: None) -> Iterator[Stack]:
    """A fresh PostgreSQL database and MongoDB database for one test (the topics are the shared ones)."""
    suffix = uuid.uuid4().hex[:10]
    database = f"customer_faults_{suffix}"
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {database}")
    env = {
        **os.environ,
        "DATABASE_URL": _with_database(database_url, database),
        "MONGODB_URI": mongodb_uri,
        "MONGODB_DATABASE": database,
        "EVENT_FORMAT": "avro",
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }
    yield Stack(env=env, database_url=env["DATABASE_URL"], mongo_database=database)
    for component in ("postgres", "mongo", "kafka"):  # a failed test may leave one stopped
        if not component_running(component):
            devstack("start", component)
    if os.environ.get("KEEP_FAULT_DB"):
        print("kept database", database)
        return
    with contextlib.suppress(Exception):
        MongoClient(mongodb_uri).drop_database(database)
    with contextlib.suppress(Exception), psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


@pytest.fixture
def run(fault_stack: Stack, request: pytest.FixtureRequest) -> Iterator[Run]:
    current = Run(request.node.name, fault_stack)
    try:
        yield current
    finally:
        current.cleanup()
