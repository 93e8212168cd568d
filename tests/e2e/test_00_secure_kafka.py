"""Kafka as production clusters (Confluent Cloud among them) require it: SASL_SSL with SCRAM-SHA-512.

The devstack's broker has a second listener for this (a throwaway CA, a SCRAM user made at its
first start; ``KAFKA_SASL_SSL_*`` in ``.devstack/env``). Here a worker and operators' commands
use nothing else: the UserRegistered goes in through it, the customer comes out in databases of
this test's own (so it was this worker that made it), the CustomerRegistered is read back through
it. The schema registry stays plain HTTP. Wrong credentials and an untrusted certificate are each
one line and a non-zero exit, not a traceback or a hang.

Named ``test_00_*`` so that it runs before the session's shared worker joins the group: the
secured worker must hold every partition.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiokafka import AIOKafkaProducer
from pymongo import MongoClient

from acme_customer.adapters.kafka_security import client_options
from acme_customer.adapters.topics import end_offsets, read_topic
from acme_customer.config import kafka_security
from acme_customer.entrypoints.cli import EXIT_CONFIGURATION, EXIT_OK, EXIT_UNAVAILABLE
from tests.e2e.conftest import REPO, Stack, Worker, as_record, databases_of_its_own, user_registered, wait_for

pytestmark = pytest.mark.e2e
CLI = str(REPO / ".venv" / "bin" / "acme-customer")
USER_EVENTS = "identity.user.events"
CUSTOMER_EVENTS = "customer.events"


@pytest.fixture(scope="module")
def secured(stack: Stack) -> Iterator[dict[str, str]]:
    """The session's environment turned to the SASL_SSL listener, with databases of its own."""
    listener = stack.env.get("KAFKA_SASL_SSL_BOOTSTRAP_SERVERS")
    if not listener:
        pytest.fail(
            "no KAFKA_SASL_SSL_* in .devstack/env: restart Kafka with this code"
            " (acme-customer devstack stop kafka && acme-customer devstack up)",
            pytrace=False,
        )
    with databases_of_its_own(
        stack,
        "customer_sasl",
        KAFKA_BOOTSTRAP_SERVERS=listener,
        KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        KAFKA_SASL_MECHANISM=stack.env["KAFKA_SASL_SSL_MECHANISM"],
        KAFKA_SASL_USERNAME=stack.env["KAFKA_SASL_SSL_USERNAME"],
        KAFKA_SASL_PASSWORD=stack.env["KAFKA_SASL_SSL_PASSWORD"],
        KAFKA_SSL_CAFILE=stack.env["KAFKA_SASL_SSL_CAFILE"],
    ) as env:
        yield env


def _cli(*args: str, env: dict[str, str], timeout: float = 90) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([CLI, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert env["KAFKA_SASL_PASSWORD"] not in result.stdout + result.stderr, "the SASL password was printed"
    return result


def _produce(env: dict[str, str], records: list[tuple[bytes, bytes]]) -> None:
    async def send() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"], acks="all", **client_options(kafka_security(env))
        )
        await producer.start()
        try:
            for key, value in records:
                await producer.send(USER_EVENTS, value, key=key)
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(send())


def _customer_of(env: dict[str, str], user_id: str) -> tuple[str, str] | None:
    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as connection:
        row = connection.execute(
            "SELECT id::text, customer_number FROM customers WHERE user_id = %s", (user_id,)
        ).fetchone()
    return (str(row[0]), str(row[1])) if row else None


def test_a_worker_and_the_cli_create_a_customer_through_sasl_ssl_with_scram_sha_512(
    secured: dict[str, str], tmp_path: Path
) -> None:
    ensured = _cli("topics", "ensure", env=secured)
    assert (ensured.returncode, ensured.stdout) == (EXIT_OK, "topics created: none (all exist)\n"), ensured.stderr
    checked = _cli("config", "check", "--connect", env=secured)
    assert checked.returncode == EXIT_OK, checked.stderr
    shown = dict(line.split(None, 1) for line in checked.stdout.splitlines())
    assert (shown["kafka_security.protocol"], shown["kafka_security.sasl_password"]) == ("SASL_SSL", "***")
    assert shown["Kafka:"] == "ok (the contract's 4 topics exist)"

    worker = Worker(env=secured, log_path=tmp_path / "sasl-worker.log").start()
    try:
        ready = worker.wait_ready()
        assert ready["checks"] == {"postgresql": "UP", "mongodb": "UP", "kafka": "UP"}
        # this worker alone holds the input: whatever is created below, it created
        wait_for(lambda: _holds_every_input_partition(worker), 60, "the worker to hold all 12 input partitions")

        security = kafka_security(secured)
        since = asyncio.run(end_offsets(secured["KAFKA_BOOTSTRAP_SERVERS"], CUSTOMER_EVENTS, security=security))
        event = user_registered(marketing_opt_in=True)
        user_id = event["payload"]["userId"]
        _produce(secured, [as_record(event)])

        customer_id, customer_number = wait_for(lambda: _customer_of(secured, user_id), 60, "the customer")
        read_model = MongoClient(secured["MONGODB_URI"])[secured["MONGODB_DATABASE"]]["customers"]
        document: Any = wait_for(lambda: read_model.find_one({"userId": user_id}), 60, "the read model's document")
        assert (document["_id"], document["customerNumber"]) == (customer_id, customer_number)

        published = asyncio.run(
            read_topic(
                secured["KAFKA_BOOTSTRAP_SERVERS"],
                CUSTOMER_EVENTS,
                since=since,
                until=lambda found: any(record.key == customer_id.encode() for record in found),
                timeout=30,
                security=security,
            )
        )
        assert any(record.key == customer_id.encode() for record in published)

        listed = _cli("dlq", "list", env=secured, timeout=180)
        assert listed.returncode == EXIT_OK, listed.stderr
        assert listed.stdout.splitlines()[-1].endswith("record(s)")
    finally:
        assert worker.stop(timeout=30) == 0


def _holds_every_input_partition(worker: Worker) -> bool | None:
    ready = worker.ready()
    return True if ready is not None and len(ready["partitions"].get(USER_EVENTS, [])) == 12 else None


WRONG_PASSWORD = {"KAFKA_SASL_PASSWORD": "not-the-password-4e1f"}
NO_CA = {"KAFKA_SSL_CAFILE": ""}  # unset: the system's CAs, which never signed the devstack's broker
TLS_ONLY = {"KAFKA_SECURITY_PROTOCOL": "SSL"}  # the TLS handshake passes; the broker drops the first request


@pytest.mark.parametrize(
    ("change", "line"),
    [
        (
            WRONG_PASSWORD,
            "refused the SASL credentials (SCRAM-SHA-512, user acme-customer):"
            " check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM",
        ),
        (
            NO_CA,
            "presented a TLS certificate not trusted by the system's CAs: self-signed certificate in certificate"
            " chain; set KAFKA_SSL_CAFILE to the CA that signed the brokers' certificates",
        ),
        (
            TLS_ONLY,
            "closed the connection at the first request over SSL: does that listener speak SSL?"
            " check KAFKA_SECURITY_PROTOCOL",
        ),
    ],
    ids=["wrong-credentials", "untrusted-certificate", "ssl-without-sasl"],
)
def test_a_refused_handshake_is_one_line_exit_3_for_a_command_and_exit_2_for_the_worker(
    secured: dict[str, str], tmp_path: Path, change: dict[str, str], line: str
) -> None:
    env = {**secured, **change}
    expected = f"Kafka at {env['KAFKA_BOOTSTRAP_SERVERS']} {line}"

    for command in (["topics", "ensure"], ["dlq", "list"]):
        result = _cli(*command, env=env)
        assert (result.returncode, result.stderr) == (EXIT_UNAVAILABLE, f"acme-customer: {expected}\n"), command
    checked = _cli("config", "check", "--connect", env=env)
    assert checked.returncode == EXIT_UNAVAILABLE
    assert f"acme-customer: {expected}" in checked.stderr.splitlines()

    stderr = tmp_path / "worker.stderr"
    worker = Worker(env=env, log_path=tmp_path / "worker.log", stderr_path=stderr).start()
    assert worker.process is not None
    assert worker.process.wait(timeout=90) == EXIT_CONFIGURATION  # the worker's "could not start"
    said = stderr.read_text() + (tmp_path / "worker.log").read_text()
    lines = [said_line for said_line in said.splitlines() if "acme-customer: cannot start" in said_line]
    assert len(lines) == 1, lines
    assert lines[0].endswith(f"acme-customer: cannot start: {expected}")
    assert "Traceback" not in said
    assert env["KAFKA_SASL_PASSWORD"] not in said


def test_the_devstack_writes_the_listener_under_names_the_service_does_not_read(stack: Stack) -> None:
    from acme_customer.config import ENV_VARS

    names = {name for name in stack.env if name.startswith("KAFKA_SASL_SSL_")}
    assert names == {
        "KAFKA_SASL_SSL_BOOTSTRAP_SERVERS",
        "KAFKA_SASL_SSL_CAFILE",
        "KAFKA_SASL_SSL_MECHANISM",
        "KAFKA_SASL_SSL_USERNAME",
        "KAFKA_SASL_SSL_PASSWORD",
    }
    assert not names & set(ENV_VARS)
    assert stack.env["KAFKA_SASL_SSL_BOOTSTRAP_SERVERS"].startswith("127.0.0.1:")
    assert stack.env["KAFKA_SASL_SSL_BOOTSTRAP_SERVERS"] != stack.env["KAFKA_BOOTSTRAP_SERVERS"]
    assert Path(stack.env["KAFKA_SASL_SSL_CAFILE"]).read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert os.environ.get("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT") == "PLAINTEXT"  # the rest of the suite's
