"""``acme-customer config check [--connect]`` as an operator runs it: one line per problem, no secret ever shown."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from acme_customer.entrypoints.cli import EXIT_CONFIGURATION, EXIT_OK, EXIT_UNAVAILABLE

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
CLI = str(REPO / ".venv" / "bin" / "acme-customer")

# secrets an operator's environment holds: none may appear in anything config check prints
SECRETS = {
    "DATABASE_URL": "pg-pass-4f2a",
    "MONGODB_URI": "mongo-pass-9c1e",
    "KAFKA_SASL_PASSWORD": "kafka-pass-77d0",
    "API_TOKENS": "api-token-0123456789abcdef",
    "OTEL_EXPORTER_OTLP_HEADERS": "otlp-key-5b3c",
    "PAYMENT_CLIENT_SECRET": "client-secret-a1b2",
}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def with_password(url: str, password: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://postgres:{password}@{rest.split('@')[-1]}"


@pytest.fixture
def environment(database_url: str, mongodb_uri: str, kafka_bootstrap: str, registry_url: str) -> dict[str, str]:
    """The local stack's settings, with a password in each URL (the stack's servers do not ask for one)."""
    base = {name: value for name, value in os.environ.items() if name not in SECRETS}
    return {
        **base,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DATABASE_URL": with_password(database_url, SECRETS["DATABASE_URL"]),
        "MONGODB_URI": with_password(mongodb_uri, SECRETS["MONGODB_URI"]).replace("postgres:", "svc:"),
        "SCHEMA_REGISTRY_URL": registry_url,
        "KAFKA_SASL_PASSWORD": SECRETS["KAFKA_SASL_PASSWORD"],
        "API_TOKENS": SECRETS["API_TOKENS"],
        "OTEL_EXPORTER_OTLP_HEADERS": f"authorization=Bearer {SECRETS['OTEL_EXPORTER_OTLP_HEADERS']}",
        "PAYMENT_CLIENT_SECRET": SECRETS["PAYMENT_CLIENT_SECRET"],
    }


def config_check(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([CLI, "config", "check", *args], env=env, capture_output=True, text=True, timeout=120)
    for secret in SECRETS.values():
        assert secret not in result.stdout + result.stderr, f"a secret was printed: {secret}"
    return result


def problems(result: subprocess.CompletedProcess[str]) -> list[str]:
    return result.stderr.splitlines()


def test_a_valid_configuration_is_shown_masked_and_exits_0(environment: dict[str, str]) -> None:
    result = config_check(environment)

    assert result.returncode == EXIT_OK, result.stderr
    shown = dict(line.split(None, 1) for line in result.stdout.splitlines())
    assert shown["database_url"].startswith("postgresql://postgres:***@")
    assert shown["mongodb_uri"].startswith("mongodb://svc:***@")
    assert shown["kafka_security.sasl_password"] == "***"
    assert shown["OTEL_EXPORTER_OTLP_HEADERS"] == "***"
    assert shown["event_format"] == "avro"
    assert shown["web_port"] == "6066"
    assert result.stderr == ""


@pytest.mark.parametrize("name", ["KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "MONGODB_URI", "SCHEMA_REGISTRY_URL"])
def test_each_missing_setting_is_one_line_and_exit_2(environment: dict[str, str], name: str) -> None:
    result = config_check({key: value for key, value in environment.items() if key != name})

    assert result.returncode == EXIT_CONFIGURATION
    (line,) = problems(result)
    assert line.startswith("acme-customer: ") and name in line
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("name", "value", "line"),
    [
        ("DATABASE_URL", "mysql://root:pg-pass-4f2a@db/x", "DATABASE_URL must be a postgresql:// URL"),
        ("MONGODB_URI", "http://svc:mongo-pass-9c1e@db/", "MONGODB_URI must be a mongodb:// or mongodb+srv:// URI"),
        ("KAFKA_BOOTSTRAP_SERVERS", "broker", "KAFKA_BOOTSTRAP_SERVERS must be host:port[,host:port], got 'broker'"),
        ("WEB_PORT", "http", "WEB_PORT must be an integer, got 'http'"),
        ("EVENT_FORMAT", "xml", "EVENT_FORMAT must be 'avro' or 'json', got 'xml'"),
        ("RETRY_BACKOFF_SECONDS", "1,x", "RETRY_BACKOFF_SECONDS must be comma-separated seconds, got '1,x'"),
    ],
)
def test_each_malformed_setting_is_one_line_and_exit_2(
    environment: dict[str, str], name: str, value: str, line: str
) -> None:
    result = config_check({**environment, name: value})

    assert result.returncode == EXIT_CONFIGURATION
    assert problems(result) == [f"acme-customer: {line}"]


def test_several_problems_give_several_lines(environment: dict[str, str]) -> None:
    env = {key: value for key, value in environment.items() if key != "MONGODB_URI"}

    result = config_check({**env, "DATABASE_URL": "mysql://x", "LOG_LEVEL": "loud", "BATCH_SIZE": "0"})

    assert result.returncode == EXIT_CONFIGURATION
    assert problems(result) == [
        "acme-customer: DATABASE_URL must be a postgresql:// URL",
        "acme-customer: MONGODB_URI is not set (see README: Configuration)",
        "acme-customer: LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got 'LOUD'",
        "acme-customer: BATCH_SIZE must be between 1 and 2147483647, got 0",
    ]


def test_a_secret_quoted_in_a_problem_is_masked_too(environment: dict[str, str]) -> None:
    # a password pasted into the wrong variable: the problem quotes the value, the secret is scrubbed
    result = config_check({**environment, "KAFKA_BOOTSTRAP_SERVERS": f"broker:{SECRETS['KAFKA_SASL_PASSWORD']}"})

    assert result.returncode == EXIT_CONFIGURATION
    assert problems(result) == [
        "acme-customer: KAFKA_BOOTSTRAP_SERVERS must be host:port[,host:port], got 'broker:***'"
    ]


def test_connect_against_the_running_stack_finds_every_dependency_answering(
    environment: dict[str, str], mongodb_uri: str
) -> None:
    # the stand-in asks for no credentials, and refuses those it does not know
    result = config_check({**environment, "MONGODB_URI": mongodb_uri}, "--connect")

    assert result.returncode == EXIT_OK, result.stderr
    answers = [line for line in result.stdout.splitlines() if ": ok" in line]
    assert [line.split(":")[0] for line in answers] == ["PostgreSQL", "MongoDB", "Kafka", "schema registry"]
    assert result.stderr == ""


def test_connect_with_every_dependency_unreachable_gives_one_line_each_and_exit_3(environment: dict[str, str]) -> None:
    port = closed_port()
    env = {
        **environment,
        "DATABASE_URL": f"postgresql://postgres:{SECRETS['DATABASE_URL']}@127.0.0.1:{port}/x",
        "MONGODB_URI": f"mongodb://svc:{SECRETS['MONGODB_URI']}@127.0.0.1:{port}/",
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
        "SCHEMA_REGISTRY_URL": f"http://127.0.0.1:{port}",
    }

    result = config_check(env, "--connect")

    assert result.returncode == EXIT_UNAVAILABLE
    lines = problems(result)
    assert len(lines) == 4, result.stderr
    assert lines[0].startswith("acme-customer: PostgreSQL unavailable: connection failed:")
    assert lines[1] == "acme-customer: MongoDB unreachable: ServerSelectionTimeoutError"
    assert lines[2] == f"acme-customer: Kafka at 127.0.0.1:{port} unavailable: KafkaConnectionError"
    assert lines[3] == f"acme-customer: schema registry at http://127.0.0.1:{port} unavailable: ConnectError"
    assert not [line for line in result.stdout.splitlines() if ": ok" in line]


def test_connect_with_credentials_mongodb_refuses_says_so_without_them(environment: dict[str, str]) -> None:
    result = config_check(environment, "--connect")

    assert result.returncode == EXIT_UNAVAILABLE
    assert problems(result) == ["acme-customer: MongoDB refused: AuthenticationFailed"]


def test_connect_with_one_dependency_down_names_only_that_one(environment: dict[str, str]) -> None:
    result = config_check({**environment, "MONGODB_URI": f"mongodb://127.0.0.1:{closed_port()}/"}, "--connect")

    assert result.returncode == EXIT_UNAVAILABLE
    assert problems(result) == ["acme-customer: MongoDB unreachable: ServerSelectionTimeoutError"]
    assert len([line for line in result.stdout.splitlines() if ": ok" in line]) == 3
