"""Settings from the environment: required, defaulted and malformed values (DESIGN "Configuration")."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import faust
import pytest

from acme_customer.config import (
    ENV_VARS,
    FAUST_ENV_VARS,
    Settings,
    described,
    secrets_in,
    shown,
    without_secrets,
)
from acme_customer.errors import AcmeCustomerError, ConfigError

REQUIRED = {
    "KAFKA_BOOTSTRAP_SERVERS": "localhost:9092",
    "DATABASE_URL": "postgresql://customer:s3cret@localhost:5432/customer",
    "MONGODB_URI": "mongodb://localhost:27017",
    "SCHEMA_REGISTRY_URL": "http://localhost:8081/apis/ccompat/v7",
}


def env(**changes: str) -> dict[str, str]:
    return {**REQUIRED, **changes}


def config_error(environment: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(environment)
    return str(caught.value)


def config_problems(environment: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(environment)
    return list(caught.value.problems)


# --- required settings ------------------------------------------------------------------------


ALWAYS_REQUIRED = sorted(set(REQUIRED) - {"SCHEMA_REGISTRY_URL"})


@pytest.mark.parametrize("name", ALWAYS_REQUIRED)
def test_a_missing_required_setting_stops_start_up_naming_the_variable(name: str) -> None:
    environment = {key: value for key, value in REQUIRED.items() if key != name}

    assert config_error(environment) == f"{name} is not set (see README: Configuration)"


def test_avro_the_default_format_needs_a_schema_registry() -> None:
    environment = {key: value for key, value in REQUIRED.items() if key != "SCHEMA_REGISTRY_URL"}

    assert config_error(environment) == (
        "EVENT_FORMAT=avro (the default) needs SCHEMA_REGISTRY_URL; set it, or EVENT_FORMAT=json"
    )
    assert Settings.from_env({**environment, "EVENT_FORMAT": "json"}).schema_registry_url is None


def test_a_schema_registry_url_must_be_http() -> None:
    assert config_error(env(SCHEMA_REGISTRY_URL="ftp://registry")) == (
        "SCHEMA_REGISTRY_URL must be an http:// or https:// URL"
    )


@pytest.mark.parametrize("name", ALWAYS_REQUIRED)
def test_a_blank_required_setting_counts_as_missing(name: str) -> None:
    assert config_error(env(**{name: "   "})) == f"{name} is not set (see README: Configuration)"


def test_settings_come_from_the_given_mapping_not_from_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)

    assert config_problems({}) == [
        "KAFKA_BOOTSTRAP_SERVERS is not set (see README: Configuration)",
        "DATABASE_URL is not set (see README: Configuration)",
        "MONGODB_URI is not set (see README: Configuration)",
        "EVENT_FORMAT=avro (the default) needs SCHEMA_REGISTRY_URL; set it, or EVENT_FORMAT=json",
    ]


def test_config_error_belongs_to_the_service_error_tree() -> None:
    assert issubclass(ConfigError, AcmeCustomerError)


# --- defaults ---------------------------------------------------------------------------------


def test_defaults_apply_when_only_the_required_settings_are_given() -> None:
    settings = Settings.from_env(REQUIRED)

    assert settings.web_port == 6066
    assert settings.mongodb_database == "customer"
    assert settings.event_format == "avro"
    assert settings.log_level == "INFO"
    assert settings.log_format == "text"
    assert settings.schema_registry_url == "http://localhost:8081/apis/ccompat/v7"
    assert settings.kafka_security.protocol == "PLAINTEXT"
    assert (settings.api_tokens, settings.api_tokens_file) == ((), None)  # the read API is disabled


def test_ac09_default_retry_backoff_is_1_2_4_8_16_seconds() -> None:
    backoff = Settings.from_env(REQUIRED).retry_backoff

    assert backoff == (1, 2, 4, 8, 16)
    assert len(backoff) == 5  # at most five retries


def test_required_settings_are_kept_as_given() -> None:
    settings = Settings.from_env(REQUIRED)

    assert settings.kafka_bootstrap_servers == "localhost:9092"
    assert settings.database_url == REQUIRED["DATABASE_URL"]
    assert settings.mongodb_uri == "mongodb://localhost:27017"


@pytest.mark.parametrize(
    "name",
    [
        "WEB_PORT",
        "MONGODB_DATABASE",
        "EVENT_FORMAT",
        "LOG_LEVEL",
        "LOG_FORMAT",
        "RETRY_BACKOFF_SECONDS",
        "API_TOKENS",
        "API_TOKENS_FILE",
    ],
)
def test_an_empty_optional_setting_means_its_default(name: str) -> None:
    assert Settings.from_env(env(**{name: ""})) == Settings.from_env(REQUIRED)


# --- values that are read ---------------------------------------------------------------------


def test_optional_settings_are_read_and_normalised() -> None:
    settings = Settings.from_env(
        env(
            WEB_PORT="8080",
            MONGODB_DATABASE="customers_test",
            SCHEMA_REGISTRY_URL="http://localhost:8081/apis/ccompat/v7",
            EVENT_FORMAT=" JSON ",
            LOG_LEVEL="debug",
            LOG_FORMAT=" Json ",
            RETRY_BACKOFF_SECONDS="0.5, 1,2",
        )
    )

    assert settings.web_port == 8080
    assert settings.mongodb_database == "customers_test"
    assert settings.schema_registry_url == "http://localhost:8081/apis/ccompat/v7"
    assert settings.event_format == "json"
    assert settings.log_level == "DEBUG"
    assert settings.log_format == "json"
    assert settings.retry_backoff == (0.5, 1.0, 2.0)


@pytest.mark.parametrize(
    "servers", ["broker:9092", "broker-1:9092,broker-2:9092", "broker-1:9092, broker-2:9093", "[::1]:9092"]
)
def test_one_or_more_bootstrap_servers_are_accepted(servers: str) -> None:
    assert Settings.from_env(env(KAFKA_BOOTSTRAP_SERVERS=servers)).kafka_bootstrap_servers == servers


@pytest.mark.parametrize("url", ["postgresql://u:p@db/customer", "postgres://u:p@db/customer"])
def test_both_postgresql_url_schemes_are_accepted(url: str) -> None:
    assert Settings.from_env(env(DATABASE_URL=url)).database_url == url


@pytest.mark.parametrize("uri", ["mongodb://db:27017", "mongodb+srv://cluster.example.com"])
def test_both_mongodb_uri_schemes_are_accepted(uri: str) -> None:
    assert Settings.from_env(env(MONGODB_URI=uri)).mongodb_uri == uri


# a throwaway CA's certificate (the devstack's SASL_SSL listener makes one like it; its key is gone)
CA_PEM = """-----BEGIN CERTIFICATE-----
MIIBYDCCAQWgAwIBAgIJAMKFAzmNXsRnMAoGCCqGSM49BAMCMBsxGTAXBgNVBAMT
EGFjbWUgZGV2c3RhY2sgQ0EwHhcNMjYxMjAxMjEzOTMyWhcNMzYxMTI4MjEzOTMy
WjAbMRkwFwYDVQQDExBhY21lIGRldnN0YWNrIENBMFkwEwYHKoZIzj0CAQYIKoZI
zj0DAQcDQgAEgYoDomhD1KpdZA5lHk1QdigkX//VsjZkesIapoUN9XVnCrzkq4l0
apzxCQuR8ER6HZZaOeVcPkAmdvOG549SVqMyMDAwHQYDVR0OBBYEFLrRLZG+l2q/
ZUxdlVmyl8+/hZJeMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSQAwRgIh
AKeC6c3WdZhiMpAQlgvHQXWKOwG0NVPB2ChtrOJdpLCnAiEAqv0gY6hdJJxXHDON
d+QOgKgd7CUBFJI01dBTfl0T5Xk=
-----END CERTIFICATE-----
"""


def test_kafka_tls_and_sasl_settings_pass_through(tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(CA_PEM)
    security = Settings.from_env(
        env(
            KAFKA_SECURITY_PROTOCOL="sasl_ssl",
            KAFKA_SASL_MECHANISM="scram-sha-512",
            KAFKA_SASL_USERNAME="svc",
            KAFKA_SASL_PASSWORD="pw",
            KAFKA_SSL_CAFILE=str(ca_file),
        )
    ).kafka_security

    assert security.protocol == "SASL_SSL"
    assert (security.sasl_mechanism, security.sasl_username, security.sasl_password) == ("SCRAM-SHA-512", "svc", "pw")
    assert security.ssl_cafile == str(ca_file)


@pytest.mark.parametrize("protocol", ["SASL_SSL", "SASL_PLAINTEXT"])
def test_sasl_without_a_username_and_password_is_one_line_naming_both(protocol: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(env(KAFKA_SECURITY_PROTOCOL=protocol))

    assert raised.value.problems == (
        f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD",
    )


def test_a_sasl_mechanism_the_clients_cannot_use_is_one_line() -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(
            env(
                KAFKA_SECURITY_PROTOCOL="SASL_SSL",
                KAFKA_SASL_MECHANISM="GSSAPI",
                KAFKA_SASL_USERNAME="svc",
                KAFKA_SASL_PASSWORD="kafka-s3cret",
            )
        )

    assert raised.value.problems == (
        "KAFKA_SASL_MECHANISM must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, got 'GSSAPI'",
    )
    assert "kafka-s3cret" not in str(raised.value)


def test_a_ca_file_that_cannot_be_loaded_is_one_line_naming_it(tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.txt"
    not_pem.write_text("not a certificate\n")
    problems = []
    for cafile in (tmp_path / "missing.pem", not_pem):
        with pytest.raises(ConfigError) as raised:
            Settings.from_env(env(KAFKA_SECURITY_PROTOCOL="SSL", KAFKA_SSL_CAFILE=str(cafile)))
        problems.extend(raised.value.problems)

    assert problems == [
        f"KAFKA_SSL_CAFILE: cannot load {tmp_path / 'missing.pem'} as CA certificates (No such file or directory)",
        f"KAFKA_SSL_CAFILE: cannot load {not_pem} as CA certificates (no PEM certificate in it)",
    ]


def test_the_sasl_password_is_not_in_the_settings_repr() -> None:
    settings = Settings.from_env(
        env(KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT", KAFKA_SASL_USERNAME="svc", KAFKA_SASL_PASSWORD="kafka-s3cret")
    )

    assert "kafka-s3cret" not in repr(settings)
    assert "svc" in repr(settings)


# --- malformed values -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "KAFKA_BOOTSTRAP_SERVERS",
            "localhost",
            "KAFKA_BOOTSTRAP_SERVERS must be host:port[,host:port], got 'localhost'",
        ),
        (
            "KAFKA_BOOTSTRAP_SERVERS",
            "localhost:abc",
            "KAFKA_BOOTSTRAP_SERVERS must be host:port[,host:port], got 'localhost:abc'",
        ),
        ("KAFKA_BOOTSTRAP_SERVERS", ":9092", "KAFKA_BOOTSTRAP_SERVERS must be host:port[,host:port], got ':9092'"),
        (
            "KAFKA_BOOTSTRAP_SERVERS",
            "a:9092,b",
            "KAFKA_BOOTSTRAP_SERVERS must be host:port[,host:port], got 'a:9092,b'",
        ),
        (
            "KAFKA_BOOTSTRAP_SERVERS",
            "a:9092,",
            "KAFKA_BOOTSTRAP_SERVERS must be host:port[,host:port], got 'a:9092,'",
        ),
        ("DATABASE_URL", "mysql://u:p@db/customer", "DATABASE_URL must be a postgresql:// URL"),
        ("DATABASE_URL", "localhost:5432/customer", "DATABASE_URL must be a postgresql:// URL"),
        ("DATABASE_URL", "postgresql+psycopg://u@db/c", "DATABASE_URL must be a postgresql:// URL"),
        ("MONGODB_URI", "http://localhost:27017", "MONGODB_URI must be a mongodb:// or mongodb+srv:// URI"),
        ("WEB_PORT", "abc", "WEB_PORT must be an integer, got 'abc'"),
        ("WEB_PORT", "60.66", "WEB_PORT must be an integer, got '60.66'"),
        ("WEB_PORT", "0", "WEB_PORT must be between 1 and 65535, got 0"),
        ("WEB_PORT", "-1", "WEB_PORT must be between 1 and 65535, got -1"),
        ("EVENT_FORMAT", "xml", "EVENT_FORMAT must be 'avro' or 'json', got 'xml'"),
        ("RETRY_BACKOFF_SECONDS", "a,b", "RETRY_BACKOFF_SECONDS must be comma-separated seconds, got 'a,b'"),
        ("RETRY_BACKOFF_SECONDS", "1,,2", "RETRY_BACKOFF_SECONDS must be comma-separated seconds, got '1,,2'"),
        ("RETRY_BACKOFF_SECONDS", "1,-2", "RETRY_BACKOFF_SECONDS must hold finite, non-negative delays, got '1,-2'"),
        ("LOG_LEVEL", "loud", "LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got 'LOUD'"),
        ("LOG_FORMAT", "logfmt", "LOG_FORMAT must be 'text' or 'json', got 'logfmt'"),
        ("LOG_FORMAT", "JSON lines", "LOG_FORMAT must be 'text' or 'json', got 'json lines'"),
        (
            "KAFKA_SECURITY_PROTOCOL",
            "TLS",
            "KAFKA_SECURITY_PROTOCOL must be PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL, got 'TLS'",
        ),
        ("BATCH_SIZE", "0", "BATCH_SIZE must be between 1 and 2147483647, got 0"),
        ("BATCH_WITHIN_SECONDS", "soon", "BATCH_WITHIN_SECONDS must be a number, got 'soon'"),
        (
            "BATCH_WITHIN_SECONDS",
            "-1",
            "BATCH_WITHIN_SECONDS must be a finite number of seconds, not negative, got '-1'",
        ),
    ],
)
def test_a_malformed_setting_stops_start_up_with_one_clear_line(name: str, value: str, message: str) -> None:
    text = config_error(env(**{name: value}))

    assert text == message
    assert "\n" not in text


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MONGODB_URI", "mongodb://svc:s3cret@h:notaport/"),
        ("MONGODB_URI", "mongodb://h1:27017,h2:99999/"),
        ("MONGODB_URI", "mongodb://[::1/"),
        ("DATABASE_URL", "postgresql://customer:s3cret@db:port/customer"),
    ],
)
def test_a_url_with_a_malformed_port_stops_start_up_without_showing_the_value(name: str, value: str) -> None:
    assert config_error(env(**{name: value})) == (
        f"{name} has a malformed host or port (the value is not shown: it may hold a password)"
    )


@pytest.mark.parametrize(
    "uri", ["mongodb://svc:p%40ss@h1:27017,h2:27018/?replicaSet=rs0", "mongodb://[::1]:27017/", "mongodb://h/"]
)
def test_hosts_with_or_without_ports_are_accepted(uri: str) -> None:
    assert Settings.from_env(env(MONGODB_URI=uri)).mongodb_uri == uri


def test_a_malformed_database_url_is_reported_without_its_password() -> None:
    text = config_error(env(DATABASE_URL="mysql://customer:s3cret@db/customer"))

    assert "s3cret" not in text
    assert text.startswith("DATABASE_URL")


def test_a_malformed_mongodb_uri_is_reported_without_its_password() -> None:
    text = config_error(env(MONGODB_URI="http://customer:s3cret@db/customer"))

    assert "s3cret" not in text
    assert text.startswith("MONGODB_URI")


def test_every_bad_setting_is_reported_each_on_its_own_line_in_a_fixed_order() -> None:
    problems = config_problems(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "localhost",
            "MONGODB_URI": "mongodb://db",
            "EVENT_FORMAT": "xml",
            "WEB_PORT": "abc",
            "RETRY_BACKOFF_SECONDS": "1,-2",
        }
    )

    assert problems == [
        "KAFKA_BOOTSTRAP_SERVERS must be host:port[,host:port], got 'localhost'",
        "DATABASE_URL is not set (see README: Configuration)",
        "EVENT_FORMAT must be 'avro' or 'json', got 'xml'",
        "WEB_PORT must be an integer, got 'abc'",
        "RETRY_BACKOFF_SECONDS must hold finite, non-negative delays, got '1,-2'",
    ]
    assert all("\n" not in problem for problem in problems)


def test_a_single_problem_is_the_whole_message() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env(WEB_PORT="abc"))

    assert caught.value.problems == ("WEB_PORT must be an integer, got 'abc'",)
    assert str(caught.value) == "WEB_PORT must be an integer, got 'abc'"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        pytest.param("WEB_PORT", "70000", id="port above 65535"),
        pytest.param("KAFKA_BOOTSTRAP_SERVERS", "localhost:99999", id="broker port above 65535"),
        pytest.param("RETRY_BACKOFF_SECONDS", "1,nan", id="NaN delay"),
        pytest.param("RETRY_BACKOFF_SECONDS", "1,inf", id="infinite delay"),
        pytest.param("BATCH_WITHIN_SECONDS", "nan", id="NaN batch window"),
    ],
)
def test_out_of_range_or_non_finite_values_stop_start_up(name: str, value: str) -> None:
    text = config_error(env(**{name: value}))

    assert text.startswith(name)


# --- the read API's bearer tokens -------------------------------------------------------------

OLD_TOKEN = "old-token-0123456789abcdef"
NEW_TOKEN = "new-token-fedcba9876543210"


def test_api_tokens_are_a_comma_separated_list_so_two_can_be_valid_during_a_rotation() -> None:
    settings = Settings.from_env(env(API_TOKENS=f" {OLD_TOKEN} , {NEW_TOKEN}"))

    assert settings.api_tokens == (OLD_TOKEN, NEW_TOKEN)
    assert settings.api_tokens_file is None


def test_api_tokens_file_holds_one_token_a_line_without_blank_lines_and_comments(tmp_path: Path) -> None:
    tokens_file = tmp_path / "tokens"
    tokens_file.write_bytes(f"# rotated 2026-12-01\r\n{OLD_TOKEN}\r\n\r\n   \n  {NEW_TOKEN}  \n# end\n".encode())

    settings = Settings.from_env(env(API_TOKENS_FILE=str(tokens_file)))

    assert settings.api_tokens == (OLD_TOKEN, NEW_TOKEN)
    assert settings.api_tokens_file == str(tokens_file)


def test_api_tokens_and_api_tokens_file_together_stop_start_up(tmp_path: Path) -> None:
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text(NEW_TOKEN)

    assert config_error(env(API_TOKENS=OLD_TOKEN, API_TOKENS_FILE=str(tokens_file))) == (
        "API_TOKENS and API_TOKENS_FILE are both set; set one of them"
    )


SECRET = "s3cret-token-value"  # what a bad token must never print


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (f"{OLD_TOKEN},", "API_TOKENS: token 2 of 2 is empty"),
        (f"{OLD_TOKEN}, ,{NEW_TOKEN}", "API_TOKENS: token 2 of 3 is empty"),
        (
            f"{OLD_TOKEN},{SECRET} x",
            "API_TOKENS: token 2 of 2 holds whitespace or a character that is not printable ASCII",
        ),
        (f"{SECRET}\tx", "API_TOKENS: token 1 of 1 holds whitespace or a character that is not printable ASCII"),
        (f"{SECRET}\u00e9", "API_TOKENS: token 1 of 1 holds whitespace or a character that is not printable ASCII"),
        (SECRET[:15], "API_TOKENS: token 1 of 1 is shorter than 16 characters"),
    ],
)
def test_a_bad_api_token_stops_start_up_naming_its_place_never_its_value(value: str, message: str) -> None:
    text = config_error(env(API_TOKENS=value))

    assert text == message
    assert SECRET[:8] not in text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (f"{OLD_TOKEN}\n\n{SECRET[:15]}\n", "API_TOKENS_FILE: line 3 is shorter than 16 characters"),
        (
            f"# a comment\n{SECRET} {SECRET}\n",
            "API_TOKENS_FILE: line 2 holds whitespace or a character that is not printable ASCII",
        ),
        ("# only a comment\n\n", "API_TOKENS_FILE holds no token"),
        ("", "API_TOKENS_FILE holds no token"),
    ],
)
def test_a_bad_api_tokens_file_stops_start_up_naming_the_line_never_the_token(
    tmp_path: Path, content: str, message: str
) -> None:
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text(content)

    text = config_error(env(API_TOKENS_FILE=str(tokens_file)))

    assert text == message
    assert SECRET[:8] not in text


def test_an_unreadable_api_tokens_file_stops_start_up_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "absent"
    not_text = tmp_path / "binary"
    not_text.write_bytes(b"\xff\xfe" + SECRET.encode())

    assert config_error(env(API_TOKENS_FILE=str(missing))) == (
        f"API_TOKENS_FILE: cannot read {missing} (No such file or directory)"
    )
    assert config_error(env(API_TOKENS_FILE=str(not_text))) == f"API_TOKENS_FILE: {not_text} is not UTF-8 text"


def test_api_tokens_never_appear_in_the_settings_repr() -> None:
    settings = Settings.from_env(env(API_TOKENS=f"{OLD_TOKEN},{NEW_TOKEN}"))

    assert OLD_TOKEN not in repr(settings) and NEW_TOKEN not in repr(settings)


def test_the_processed_cache_is_this_process_s_memory_unless_a_table_is_asked_for() -> None:
    assert Settings.from_env(REQUIRED).processed_cache == "memory"
    settings = Settings.from_env(env(PROCESSED_CACHE=" Table ", PROCESSED_CACHE_RETENTION_DAYS="0.5"))

    assert (settings.processed_cache, settings.processed_cache_retention_s) == ("table", 43200.0)
    assert Settings.from_env(REQUIRED).processed_cache_retention_s == 7 * 86400


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("PROCESSED_CACHE", "redis", "PROCESSED_CACHE must be 'table' or 'memory', got 'redis'"),
        ("PROCESSED_CACHE_RETENTION_DAYS", "0", "PROCESSED_CACHE_RETENTION_DAYS must be more than 0"),
        ("PROCESSED_CACHE_RETENTION_DAYS", "a week", "PROCESSED_CACHE_RETENTION_DAYS must be a number, got 'a week'"),
    ],
)
def test_a_bad_processed_cache_setting_stops_start_up_naming_it(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(env(**{name: value}))

    assert str(raised.value) == message


# --- shown by config check: secrets masked ----------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown_as"),
    [
        ("postgresql://customer:s3cret@db:5432/customer", "postgresql://customer:***@db:5432/customer"),
        (
            "postgresql://customer@db/customer?password=s3cret&sslmode=require",
            "postgresql://customer@db/customer?password=***&sslmode=require",
        ),
        (
            "mongodb://svc:s3cret@h1:27017,h2:27017/?replicaSet=rs0",
            "mongodb://svc:***@h1:27017,h2:27017/?replicaSet=rs0",
        ),
        ("mongodb://svc:p@ss@host/", "mongodb://svc:***@host/"),
        (
            "mongodb+srv://h/?authMechanismProperties=AWS_SESSION_TOKEN:s3cret",
            "mongodb+srv://h/?authMechanismProperties=***",
        ),
        ("http://registry:8081/apis/ccompat/v7", "http://registry:8081/apis/ccompat/v7"),
        ("broker-1:9092,broker-2:9092", "broker-1:9092,broker-2:9092"),
    ],
)
def test_a_url_is_shown_without_its_password_or_secret_parameters(url: str, shown_as: str) -> None:
    assert without_secrets(url) == shown_as


@pytest.mark.parametrize(
    "name",
    [
        "sasl_password",
        "KAFKA_SASL_PASSWORD",
        "api_tokens",
        "API_TOKENS_FILE",
        "OTEL_EXPORTER_OTLP_HEADERS",
        "DB_SECRET",
    ],
)
def test_a_value_whose_name_says_secret_is_never_shown(name: str) -> None:
    assert shown(name, "s3cret") == "***"
    assert shown(name, ("token-one", "token-two")) == "***"
    assert shown(name, None) == "(unset)"


def test_every_effective_setting_is_described_and_no_secret_is_in_the_description() -> None:
    settings = Settings.from_env(
        env(
            DATABASE_URL="postgresql://customer:pg-s3cret@db/customer",
            MONGODB_URI="mongodb://svc:mongo-s3cret@db/",
            KAFKA_SECURITY_PROTOCOL="SASL_SSL",
            KAFKA_SASL_USERNAME="svc",
            KAFKA_SASL_PASSWORD="kafka-s3cret",
        )
    )

    described_settings = dict(described(settings))

    assert described_settings["database_url"] == "postgresql://customer:***@db/customer"
    assert described_settings["kafka_security.sasl_password"] == "***"
    assert described_settings["kafka_security.sasl_username"] == "svc"
    assert described_settings["retry_backoff"] == "1.0,2.0,4.0,8.0,16.0"
    assert described_settings["kafka_security.ssl_cafile"] == "(unset)"
    assert described_settings["api_tokens"] == "(unset)"
    assert len(described_settings) == 23
    assert "s3cret" not in repr(described_settings)


def test_the_secrets_of_an_environment_are_found_to_be_scrubbed() -> None:
    secrets = set(
        secrets_in(
            {
                "DATABASE_URL": "postgresql://u:pg-pw@db/c",
                "API_TOKENS": "token-one, token-two",
                "LOG_LEVEL": "INFO",
                "WEIRD": "http://[::1",
            }
        )
    )

    assert {"pg-pw", "token-one", "token-two"} <= secrets
    assert "INFO" not in secrets


# --- the names read (what deploy/ may set: tests/unit/test_deploy_artefacts.py) --------------------


class RecordingEnv(Mapping[str, str]):
    """An environment that notes every name looked up in it (and refuses to be listed whole)."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.looked_up: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.looked_up.add(name)
        return self.values[name]

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("from_env must look names up, not list the environment")

    def __len__(self) -> int:
        return len(self.values)


@pytest.mark.parametrize(
    "values",
    [REQUIRED, {**REQUIRED, "API_TOKENS": "a-token-of-sixteen-or-more", "KAFKA_SASL_PASSWORD": "pw", "WEB_HOST": "::"}],
    ids=["required-only", "more-set"],
)
def test_from_env_reads_exactly_the_names_of_env_vars(values: dict[str, str]) -> None:
    recording = RecordingEnv(values)

    Settings.from_env(recording)

    assert sorted(recording.looked_up) == sorted(ENV_VARS)
    assert len(set(ENV_VARS)) == len(ENV_VARS)


@pytest.mark.parametrize(
    "values",
    [{}, {**REQUIRED, **{name: "not-valid" for name in ("WEB_PORT", "BATCH_SIZE", "LOG_LEVEL", "EVENT_FORMAT")}}],
    ids=["empty", "malformed"],
)
def test_from_env_stopping_at_a_problem_has_read_no_name_outside_env_vars(values: dict[str, str]) -> None:
    recording = RecordingEnv(values)

    with pytest.raises(ConfigError):
        Settings.from_env(recording)

    assert recording.looked_up <= set(ENV_VARS)


@pytest.mark.parametrize("name", FAUST_ENV_VARS)
def test_the_faust_variables_are_read_by_faust_itself(name: str) -> None:
    setting = next((value for value in vars(faust.Settings).values() if getattr(value, "env_name", None) == name), None)
    assert setting is not None, f"no Faust setting reads {name}"
    assert name not in ENV_VARS
