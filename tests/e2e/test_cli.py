"""The ``acme-customer`` console script, run as operators run it, against the real local stack."""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse, urlunparse

import psycopg
import pytest

from acme_customer.adapters.migrations import migration_files
from tests.e2e.conftest import REPO, Stack, Worker, as_record, user_registered, wait_for

pytestmark = pytest.mark.e2e

CLI = str(REPO / ".venv" / "bin" / "acme-customer")
DLQ = "identity.user.events.dlq"


def _cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def empty_database(database_url: str) -> Iterator[str]:
    """A database with nothing in it, dropped afterwards."""
    name = f"customer_cli_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    try:
        yield urlunparse(urlparse(database_url)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(database_url, autocommit=True) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_migrate_twice_on_the_session_database_ends_up_to_date(stack: Stack) -> None:
    # the session worker may have migrated this database already: either answer is right the first time
    first = _cli("migrate", env=stack.env)
    assert first.returncode == 0, first.stderr
    versions = ", ".join(version for version, _ in migration_files())
    assert first.stdout.strip() in (f"migrations applied: {versions}", "migrations applied: none (schema up to date)")
    second = _cli("migrate", env=stack.env)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "migrations applied: none (schema up to date)"
    assert stack.sql("SELECT version FROM schema_migrations ORDER BY version") == [
        (version,) for version, _ in migration_files()
    ]


def test_migrate_applies_every_migration_to_an_empty_database_then_nothing(stack: Stack, empty_database: str) -> None:
    env = {**stack.env, "DATABASE_URL": empty_database}
    first = _cli("migrate", env=env)
    assert first.returncode == 0, first.stderr
    versions = [version for version, _ in migration_files()]
    assert versions
    assert first.stdout.strip() == f"migrations applied: {', '.join(versions)}"
    second = _cli("migrate", env=env)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "migrations applied: none (schema up to date)"
    with psycopg.connect(empty_database) as connection:
        tables = {row[0] for row in connection.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"customers", "customer_preferences", "event_store", "processed_events", "schema_migrations"} <= tables


def test_migrate_without_database_url_exits_2_with_one_line_naming_it(stack: Stack) -> None:
    env = {name: value for name, value in stack.env.items() if name != "DATABASE_URL"}
    result = _cli("migrate", env=env)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "DATABASE_URL" in lines[0]
    assert result.stdout == ""


def test_topics_ensure_when_all_exist_creates_none(stack: Stack) -> None:
    result = _cli("topics", "ensure", env=stack.env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "topics created: none (all exist)"


def test_devstack_status_reports_four_running_components(stack: Stack) -> None:
    result = _cli("devstack", "status", env=stack.env)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4, result.stdout
    assert {line.split()[0] for line in lines} == {"postgres", "mongo", "kafka", "registry"}
    for line in lines:
        assert line.split()[1] == "running", line


def test_demo_runs_the_main_job_end_to_end(stack: Stack, worker: Worker) -> None:
    dlq_since = stack.end_offsets(DLQ)
    result = _cli("demo", env=stack.env, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "== profiles in MongoDB" in out
    profiles, _, events = out.partition("== CustomerRegistered on customer.events")
    assert len(re.findall(r'^ {2}"customerNumber": "ACME-\d{6}-\d{6}",?$', profiles, re.M)) == 3
    assert "CustomerRegistered on customer.events: 3 for 4 deliveries" in out
    assert len(re.findall(r'"causationId"', events)) == 3
    assert "== the malformed record is in identity.user.events.dlq" in out

    # this run's malformed record really reached the DLQ, with its reason
    def demo_record(record: Any) -> bool:
        return bytes(record.key or b"").startswith(b"demo-malformed-")

    dead = stack.read_since(DLQ, dlq_since, lambda found: any(demo_record(record) for record in found))
    (broken,) = [record for record in dead if demo_record(record)]
    headers = {name: value.decode() for name, value in broken.headers}
    assert headers["x-error-class"] == "InvalidEvent"
    assert headers["x-error-message"] == "value: not Avro or JSON"
    # the session worker has the partitions again once the demo's worker left, and consumes them
    worker.wait_ready(timeout=60)
    later = user_registered()
    stack.produce([as_record(later)])
    wait_for(
        lambda: stack.sql("SELECT 1 FROM customers WHERE user_id = %s", (later["payload"]["userId"],)),
        30,
        "a customer for an event produced after the demo",
    )
