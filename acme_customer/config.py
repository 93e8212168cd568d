"""Settings read once at start-up from the environment (the Contract's variables)."""

from __future__ import annotations

import dataclasses
import math
import re
import ssl
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlparse, urlsplit, urlunsplit

from acme_customer.errors import ConfigError

DEFAULT_BACKOFF: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)  # AC-0002-03-09
# Every environment variable ``Settings.from_env`` reads, no more and no fewer (a unit test holds it
# to that); the deploy artefacts' test allows only these, FAUST_ENV_VARS and the OpenTelemetry ones.
ENV_VARS: tuple[str, ...] = (
    "KAFKA_BOOTSTRAP_SERVERS",
    "DATABASE_URL",
    "MONGODB_URI",
    "MONGODB_DATABASE",
    "SCHEMA_REGISTRY_URL",
    "EVENT_FORMAT",
    "WEB_PORT",
    "WEB_HOST",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "BATCH_SIZE",
    "BATCH_WITHIN_SECONDS",
    "PROJECTION_BATCH_SIZE",
    "RETRY_BACKOFF_SECONDS",
    "PROCESSED_CACHE",
    "PROCESSED_CACHE_RETENTION_DAYS",
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SSL_CAFILE",
    "API_TOKENS",
    "API_TOKENS_FILE",
)
# Faust settings read by Faust itself from the environment (their ``env_name``), documented in the
# README and left alone by the app's configure hook (a unit test checks both).
FAUST_ENV_VARS: tuple[str, ...] = ("BROKER_SESSION_TIMEOUT",)
MIN_API_TOKEN_LENGTH = 16
_T = TypeVar("_T")


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} is not set (see README: Configuration)")
    return value


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1, maximum: int = 2**31 - 1) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name} must be a finite number of seconds, not negative, got {raw!r}")
    return value


def _backoff(env: Mapping[str, str]) -> tuple[float, ...]:
    raw = env.get("RETRY_BACKOFF_SECONDS", "").strip()
    if not raw:
        return DEFAULT_BACKOFF
    try:
        delays = tuple(float(part) for part in raw.split(","))
    except ValueError:
        raise ConfigError(f"RETRY_BACKOFF_SECONDS must be comma-separated seconds, got {raw!r}") from None
    if any(not math.isfinite(delay) or delay < 0 for delay in delays):
        raise ConfigError(f"RETRY_BACKOFF_SECONDS must hold finite, non-negative delays, got {raw!r}")
    return delays


class _Problems:
    """Every problem with the settings, so that one run reports them all, each on its own line."""

    def __init__(self) -> None:
        self.found: list[str] = []

    def read(self, reader: Callable[[], _T], fallback: _T) -> _T:
        """``reader()``, or ``fallback`` with its problems noted."""
        try:
            return reader()
        except ConfigError as error:
            self.found.extend(error.problems)
            return fallback


def _bootstrap_servers(env: Mapping[str, str]) -> str:
    bootstrap = _required(env, "KAFKA_BOOTSTRAP_SERVERS")
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"KAFKA_BOOTSTRAP_SERVERS must be host:port[,host:port], got {bootstrap!r}")
    return bootstrap


def _url(env: Mapping[str, str], name: str, schemes: tuple[str, ...], what: str) -> str:
    value = _required(env, name)
    # never the value in a message: it may hold a password
    malformed = f"{name} has a malformed host or port (the value is not shown: it may hold a password)"
    try:
        parts = urlsplit(value)
    except ValueError:  # an unbalanced IPv6 bracket
        raise ConfigError(malformed) from None
    if parts.scheme not in schemes:
        raise ConfigError(f"{name} must be {what}")
    # a port that is not a number would otherwise surface later, from the driver, as its traceback
    for host in parts.netloc.rpartition("@")[2].split(","):
        _, colon, port = ("", "", "") if host.endswith("]") else host.rpartition(":")
        if colon and not (port.isdigit() and 0 < int(port) < 65536):
            raise ConfigError(malformed)
    return value


def _event_format(env: Mapping[str, str]) -> str:
    event_format = env.get("EVENT_FORMAT", "avro").strip().lower() or "avro"
    if event_format not in ("json", "avro"):
        raise ConfigError(f"EVENT_FORMAT must be 'avro' or 'json', got {event_format!r}")
    return event_format


def _registry_url(env: Mapping[str, str], event_format: str | None) -> str | None:
    registry_url = env.get("SCHEMA_REGISTRY_URL", "").strip() or None
    if event_format == "avro" and registry_url is None:
        raise ConfigError("EVENT_FORMAT=avro (the default) needs SCHEMA_REGISTRY_URL; set it, or EVENT_FORMAT=json")
    if registry_url is not None and urlparse(registry_url).scheme not in ("http", "https"):
        raise ConfigError("SCHEMA_REGISTRY_URL must be an http:// or https:// URL")
    return registry_url


def _log_level(env: Mapping[str, str]) -> str:
    log_level = env.get("LOG_LEVEL", "INFO").strip().upper() or "INFO"
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError(f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {log_level!r}")
    return log_level


def _security_protocol(env: Mapping[str, str]) -> str:
    protocol = env.get("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT").strip().upper() or "PLAINTEXT"
    if protocol not in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"):
        raise ConfigError(
            f"KAFKA_SECURITY_PROTOCOL must be PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL, got {protocol!r}"
        )
    return protocol


SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def _ssl_cafile(env: Mapping[str, str], protocol: str) -> str | None:
    cafile = env.get("KAFKA_SSL_CAFILE", "").strip() or None
    if cafile is None or protocol not in ("SSL", "SASL_SSL"):
        return cafile
    try:  # as the Kafka clients will load it, so that a bad file is this line and not their traceback
        ssl.create_default_context(cafile=cafile)
    except OSError as error:  # ssl.SSLError too: a file that holds no PEM certificate
        reason = "no PEM certificate in it" if isinstance(error, ssl.SSLError) else error.strerror or str(error)
        raise ConfigError(f"KAFKA_SSL_CAFILE: cannot load {cafile} as CA certificates ({reason})") from None
    return cafile


def kafka_security(env: Mapping[str, str]) -> KafkaSecurity:
    """The Kafka clients' TLS/SASL settings; ConfigError when they cannot work together."""
    problems = _Problems()
    protocol = problems.read(lambda: _security_protocol(env), "PLAINTEXT")
    mechanism = env.get("KAFKA_SASL_MECHANISM", "").strip().upper() or None
    username = env.get("KAFKA_SASL_USERNAME") or None
    password = env.get("KAFKA_SASL_PASSWORD") or None
    cafile = problems.read(lambda: _ssl_cafile(env, protocol), None)
    if protocol.startswith("SASL_"):
        if mechanism is not None and mechanism not in SASL_MECHANISMS:
            problems.found.append(
                f"KAFKA_SASL_MECHANISM must be {', '.join(SASL_MECHANISMS[:-1])} or {SASL_MECHANISMS[-1]},"
                f" got {mechanism!r}"
            )
        missing = [
            name for name, value in (("KAFKA_SASL_USERNAME", username), ("KAFKA_SASL_PASSWORD", password)) if not value
        ]
        if missing:
            problems.found.append(f"KAFKA_SECURITY_PROTOCOL={protocol} needs {' and '.join(missing)}")
    if problems.found:
        raise ConfigError(*problems.found)
    return KafkaSecurity(
        protocol=protocol, sasl_mechanism=mechanism, sasl_username=username, sasl_password=password, ssl_cafile=cafile
    )


def _api_tokens(tokens: Iterable[tuple[str, str]], name: str) -> tuple[str, ...]:
    """Check each ``(where, token)``; a bad one is reported by its place, never by its value."""
    checked = []
    for where, token in tokens:
        if not token:
            raise ConfigError(f"{name}: {where} is empty")
        if any(not "!" <= character <= "~" for character in token):
            raise ConfigError(f"{name}: {where} holds whitespace or a character that is not printable ASCII")
        if len(token) < MIN_API_TOKEN_LENGTH:
            raise ConfigError(f"{name}: {where} is shorter than {MIN_API_TOKEN_LENGTH} characters")
        checked.append(token)
    if not checked:
        raise ConfigError(f"{name} holds no token")
    return tuple(checked)


def parse_api_tokens(text: str, name: str = "API_TOKENS") -> tuple[str, ...]:
    """The bearer tokens of a comma-separated list (spaces around the commas are ignored)."""
    parts = [part.strip() for part in text.split(",")]
    return _api_tokens(((f"token {number} of {len(parts)}", part) for number, part in enumerate(parts, 1)), name)


def parse_api_tokens_file(text: str, name: str = "API_TOKENS_FILE") -> tuple[str, ...]:
    """The bearer tokens of a file: one per line; blank lines and ``#`` comments are ignored."""
    lines = [(f"line {number}", line.strip()) for number, line in enumerate(text.splitlines(), 1)]
    return _api_tokens(((where, line) for where, line in lines if line and not line.startswith("#")), name)


def read_api_tokens_file(path: str, name: str = "API_TOKENS_FILE") -> tuple[str, ...]:
    """Read and check the tokens file; any problem is one ConfigError naming the variable and the path."""
    try:
        with open(path, "rb") as tokens_file:
            text = tokens_file.read().decode("utf-8")
    except OSError as error:
        raise ConfigError(f"{name}: cannot read {path} ({error.strerror or type(error).__name__})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{name}: {path} is not UTF-8 text") from None
    return parse_api_tokens_file(text, name)


def _log_format(env: Mapping[str, str]) -> str:
    log_format = env.get("LOG_FORMAT", "text").strip().lower() or "text"
    if log_format not in ("text", "json"):
        raise ConfigError(f"LOG_FORMAT must be 'text' or 'json', got {log_format!r}")
    return log_format


def _api_tokens_of(env: Mapping[str, str]) -> tuple[tuple[str, ...], str | None]:
    """The read API's tokens and the file they came from (none: the API is disabled)."""
    api_tokens_text = env.get("API_TOKENS", "").strip()
    api_tokens_file = env.get("API_TOKENS_FILE", "").strip() or None
    if api_tokens_text and api_tokens_file:
        raise ConfigError("API_TOKENS and API_TOKENS_FILE are both set; set one of them")
    if api_tokens_file:
        return read_api_tokens_file(api_tokens_file), api_tokens_file
    return (parse_api_tokens(api_tokens_text) if api_tokens_text else ()), None


def _processed_cache(env: Mapping[str, str]) -> str:
    # memory by default: a table's recovery at each start and rebalance grows with its entries
    # (429 s for 1,000,000 here; docs/reliability.md, "The processed-eventId table")
    processed_cache = env.get("PROCESSED_CACHE", "memory").strip().lower() or "memory"
    if processed_cache not in ("table", "memory"):
        raise ConfigError(f"PROCESSED_CACHE must be 'table' or 'memory', got {processed_cache!r}")
    return processed_cache


def _retention_s(env: Mapping[str, str]) -> float:
    retention_days = _float(env, "PROCESSED_CACHE_RETENTION_DAYS", 7.0)
    if retention_days <= 0:
        raise ConfigError("PROCESSED_CACHE_RETENTION_DAYS must be more than 0")
    return retention_days * 86400.0


@dataclass(frozen=True)
class KafkaSecurity:
    """TLS/SASL settings passed through to the Kafka client (all optional)."""

    protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = dataclasses.field(default=None, repr=False)  # never in a log line
    ssl_cafile: str | None = None


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap_servers: str
    database_url: str
    mongodb_uri: str
    mongodb_database: str = "customer"
    schema_registry_url: str | None = None
    event_format: str = "avro"
    web_port: int = 6066
    web_host: str = "127.0.0.1"
    log_level: str = "INFO"
    log_format: str = "text"
    batch_size: int = 100
    projection_batch_size: int = 500
    batch_within_seconds: float = 0.05
    retry_backoff: tuple[float, ...] = DEFAULT_BACKOFF
    kafka_security: KafkaSecurity = KafkaSecurity()
    # the read API's bearer tokens (from API_TOKENS, or as API_TOKENS_FILE held them at start);
    # none: the API is disabled. Never in a repr: settings may end up in a log line.
    api_tokens: tuple[str, ...] = dataclasses.field(default=(), repr=False)
    api_tokens_file: str | None = None
    processed_cache: str = "memory"  # the processed-eventId cache: this process's memory, or a Faust table
    processed_cache_retention_s: float = 7 * 86400.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Read and check every setting; raise ConfigError naming every bad one, in this order."""
        problems = _Problems()
        bootstrap = problems.read(lambda: _bootstrap_servers(env), "")
        database_url = problems.read(
            lambda: _url(env, "DATABASE_URL", ("postgresql", "postgres"), "a postgresql:// URL"), ""
        )
        mongodb_uri = problems.read(
            lambda: _url(env, "MONGODB_URI", ("mongodb", "mongodb+srv"), "a mongodb:// or mongodb+srv:// URI"), ""
        )
        event_format = problems.read(lambda: _event_format(env), None)
        registry_url = problems.read(lambda: _registry_url(env, event_format), None)
        log_level = problems.read(lambda: _log_level(env), "INFO")
        security = problems.read(lambda: kafka_security(env), KafkaSecurity())
        web_port = problems.read(lambda: _int(env, "WEB_PORT", 6066, maximum=65535), 6066)
        batch_size = problems.read(lambda: _int(env, "BATCH_SIZE", 100), 100)
        projection_batch_size = problems.read(lambda: _int(env, "PROJECTION_BATCH_SIZE", 500), 500)
        batch_within_seconds = problems.read(lambda: _float(env, "BATCH_WITHIN_SECONDS", 0.05), 0.05)
        retry_backoff = problems.read(lambda: _backoff(env), DEFAULT_BACKOFF)
        log_format = problems.read(lambda: _log_format(env), "text")
        no_tokens: tuple[tuple[str, ...], str | None] = ((), None)
        api_tokens, api_tokens_file = problems.read(lambda: _api_tokens_of(env), no_tokens)
        processed_cache = problems.read(lambda: _processed_cache(env), "memory")
        retention_s = problems.read(lambda: _retention_s(env), 7 * 86400.0)
        if problems.found:
            raise ConfigError(*problems.found)
        return cls(
            kafka_bootstrap_servers=bootstrap,
            database_url=database_url,
            mongodb_uri=mongodb_uri,
            mongodb_database=env.get("MONGODB_DATABASE", "customer").strip() or "customer",
            schema_registry_url=registry_url,
            event_format=event_format or "avro",
            web_port=web_port,
            web_host=env.get("WEB_HOST", "127.0.0.1").strip() or "127.0.0.1",
            log_level=log_level,
            log_format=log_format,
            batch_size=batch_size,
            projection_batch_size=projection_batch_size,
            batch_within_seconds=batch_within_seconds,
            retry_backoff=retry_backoff,
            kafka_security=security,
            api_tokens=api_tokens,
            api_tokens_file=api_tokens_file,
            processed_cache=processed_cache,
            processed_cache_retention_s=retention_s,
        )


# -- showing the configuration (``acme-customer config check``) ---------------------------------

MASK = "***"
# names whose values are secret (settings and environment variables alike)
_SECRET_NAME = re.compile(r"TOKEN|PASSW(OR)?D|SECRET|CREDENTIAL|HEADERS|API_?KEY|PRIVATE_KEY", re.IGNORECASE)
# query parameters of a URL whose values are secret (libpq's password=, MongoDB's auth properties, …)
_SECRET_PARAMETER = re.compile(
    r"(?P<name>(?:^|[&;])[^=&;]*(?:passw|token|secret|credential|authmechanismproperties)[^=&;]*=)[^&;]*",
    re.IGNORECASE,
)


def is_secret_name(name: str) -> bool:
    return _SECRET_NAME.search(name) is not None


def without_secrets(text: str) -> str:
    """``text`` with the password of a URL and its secret query parameters masked."""
    try:
        parts = urlsplit(text)
    except ValueError:  # not a URL after all (an unbalanced IPv6 bracket)
        return text
    if not parts.scheme or not parts.netloc:
        return text
    userinfo, at, hosts = parts.netloc.rpartition("@")  # the last @: a raw @ in a password stays inside
    netloc = f"{userinfo.partition(':')[0]}:{MASK}@{hosts}" if at and ":" in userinfo else parts.netloc
    query = _SECRET_PARAMETER.sub(lambda match: match["name"] + MASK, parts.query)
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def shown(name: str, value: object) -> str:
    """A setting's value as ``config check`` shows it: secrets masked, never printed."""
    if value is None or value == "" or value == ():
        return "(unset)"
    if is_secret_name(name):
        return MASK
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value)
    return without_secrets(str(value))


def described(settings: Settings) -> list[tuple[str, str]]:
    """Every effective setting as (name, value shown), nested ones as ``kafka_security.protocol``."""
    rows: list[tuple[str, str]] = []
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            rows.extend(
                (f"{field.name}.{inner.name}", shown(inner.name, getattr(value, inner.name)))
                for inner in dataclasses.fields(value)
            )
        else:
            rows.append((field.name, shown(field.name, value)))
    return rows


def secrets_in(env: Mapping[str, str]) -> Iterator[str]:
    """Every secret the environment holds (secret-named values, URL passwords), to scrub from any output."""
    for name, value in env.items():
        if is_secret_name(name):
            yield value
            yield from (part.strip() for part in value.split(","))
        try:
            password = urlsplit(value).password if "://" in value else None
        except ValueError:
            password = None
        if password:
            yield password
