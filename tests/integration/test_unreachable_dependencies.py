"""Whatever is unreachable, every command and the worker say so in one line, with a documented exit code.

Nothing here stops a server of the shared local stack: a dependency is "down" by pointing its
setting at a port nothing listens on. No worker here reaches the shared Kafka (the one started
is stopped by the unreachable broker before it joins any group).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from pymongo import MongoClient

from acme_customer.adapters.schemas import CUSTOMER_REGISTERED, backward_problems, load_schema
from acme_customer.bootstrap import Container
from acme_customer.entrypoints.cli import EXIT_CONFIGURATION, EXIT_UNAVAILABLE
from acme_customer.errors import RegistryUnavailable, StoreUnavailable

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
CLI = str(REPO / ".venv" / "bin" / "acme-customer")


def closed_port() -> int:
    """A port nothing listens on (bound once by us, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def scratch(database_url: str, mongodb_uri: str) -> Iterator[dict[str, str]]:
    """The stack's settings over a PostgreSQL database and a MongoDB database of this module only."""
    name = f"it_unreachable_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = database_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield {
            **os.environ,
            "DATABASE_URL": url,
            "MONGODB_URI": mongodb_uri,
            "MONGODB_DATABASE": name,
        }
    finally:
        MongoClient(mongodb_uri).drop_database(name)
        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def run(env: dict[str, str], *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)


def only_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


POSTGRES_DOWN = r"acme-customer: PostgreSQL unavailable: connection failed: .*port {port} failed: Connection refused"
KAFKA_DOWN = r"acme-customer: Kafka at 127\.0\.0\.1:{port} unavailable: KafkaConnectionError"


@pytest.mark.parametrize(
    ("args", "setting", "expected"),
    [
        pytest.param(("migrate",), "DATABASE_URL", POSTGRES_DOWN, id="migrate, PostgreSQL down"),
        pytest.param(("dlq", "list"), "KAFKA_BOOTSTRAP_SERVERS", KAFKA_DOWN, id="dlq list, Kafka down"),
        pytest.param(("dlq", "list"), "DATABASE_URL", POSTGRES_DOWN, id="dlq list, PostgreSQL down"),
        pytest.param(("dlq", "replay", "--dry-run"), "KAFKA_BOOTSTRAP_SERVERS", KAFKA_DOWN, id="replay, Kafka down"),
        pytest.param(("topics", "ensure"), "KAFKA_BOOTSTRAP_SERVERS", KAFKA_DOWN, id="topics ensure, Kafka down"),
        pytest.param(("projections", "rebuild"), "DATABASE_URL", POSTGRES_DOWN, id="rebuild, PostgreSQL down"),
        pytest.param(("verify",), "DATABASE_URL", POSTGRES_DOWN, id="verify, PostgreSQL down"),
        pytest.param(("reconcile", "--apply"), "DATABASE_URL", POSTGRES_DOWN, id="reconcile, PostgreSQL down"),
        pytest.param(
            ("verify",),
            "MONGODB_URI",
            r"acme-customer: MongoDB unreachable: ServerSelectionTimeoutError",
            id="verify, MongoDB down",
        ),
        pytest.param(
            ("projections", "rebuild"),
            "MONGODB_URI",
            r"acme-customer: MongoDB unreachable: ServerSelectionTimeoutError",
            id="rebuild, MongoDB down",
        ),
    ],
)
def test_a_command_with_a_dependency_down_prints_one_line_and_exits_3(
    scratch: dict[str, str], args: tuple[str, ...], setting: str, expected: str
) -> None:
    port = closed_port()
    down = {
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{port}/nowhere",
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
        "MONGODB_URI": f"mongodb://127.0.0.1:{port}/",
        "SCHEMA_REGISTRY_URL": f"http://127.0.0.1:{port}",
    }

    result = run({**scratch, setting: down[setting]}, *args)

    assert result.returncode == EXIT_UNAVAILABLE, result.stdout + result.stderr
    assert re.fullmatch(expected.format(port=port), only_line(result))
    assert result.stdout == ""


def test_the_worker_with_kafka_unreachable_stops_with_one_line_and_exit_2(
    scratch: dict[str, str], tmp_path: Path
) -> None:
    port = closed_port()
    env = {**scratch, "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}", "WEB_PORT": str(closed_port())}

    # run from a scratch directory: Faust writes its data directory where it starts
    result = subprocess.run([CLI, "worker"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=90)

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("acme-customer:")]
    assert lines == [
        f"acme-customer: cannot start: Kafka at 127.0.0.1:{port} unreachable (no bootstrap server accepts a connection)"
    ]


def test_the_worker_reports_every_bad_setting_each_on_its_own_line(scratch: dict[str, str], tmp_path: Path) -> None:
    env = {**scratch, "DATABASE_URL": "mysql://nope", "WEB_PORT": "abc", "EVENT_FORMAT": "xml"}

    result = subprocess.run([CLI, "worker"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=90)

    assert result.returncode == EXIT_CONFIGURATION
    assert [line for line in result.stderr.splitlines() if line.startswith("acme-customer:")] == [
        "acme-customer: configuration error: DATABASE_URL must be a postgresql:// URL",
        "acme-customer: configuration error: EVENT_FORMAT must be 'avro' or 'json', got 'xml'",
        "acme-customer: configuration error: WEB_PORT must be an integer, got 'abc'",
    ]


async def test_the_compatibility_check_with_the_registry_down_raises_one_line_naming_it() -> None:
    """(``schemas check`` asks the registry only when a schema has earlier committed versions.)"""
    port = closed_port()
    schema = load_schema(CUSTOMER_REGISTERED)

    with pytest.raises(RegistryUnavailable) as caught:
        await backward_problems(f"http://user:pw@127.0.0.1:{port}", "CustomerRegistered", [schema], schema)

    assert str(caught.value) == f"schema registry at http://127.0.0.1:{port} unavailable: ConnectError"


async def test_verify_on_a_database_never_migrated_says_so_in_one_line(
    scratch: dict[str, str], database_url: str
) -> None:
    name = f"it_unmigrated_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        result = run({**scratch, "DATABASE_URL": database_url.rsplit("/", 1)[0] + f"/{name}"}, "verify")
    finally:
        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    assert result.returncode == EXIT_UNAVAILABLE
    assert only_line(result) == (
        'acme-customer: PostgreSQL: relation "customers" does not exist (is the schema migrated? acme-customer migrate)'
    )


async def test_starting_with_postgresql_down_fails_with_one_line_not_a_driver_traceback(
    scratch: dict[str, str],
) -> None:
    """What the worker's start-up does first (the migrations), as the worker does it; the worker
    prints this error's text after ``acme-customer: cannot start:`` and exits 2 (app.Resources)."""
    port = closed_port()
    container = Container()
    container.configure({**scratch, "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{port}/nowhere"})

    with pytest.raises(StoreUnavailable) as caught:
        await container.start(producer=None)  # type: ignore[arg-type]  # never reached: the stores fail first

    message = str(caught.value)
    assert "\n" not in message
    assert re.fullmatch(POSTGRES_DOWN.format(port=port).removeprefix("acme-customer: "), message)
