"""Settings read once at start-up from the environment (the Contract's variables)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlparse

from acme_customer.errors import ConfigError

DEFAULT_BACKOFF = (1.0, 2.0, 4.0, 8.0, 16.0)  # AC-0002-03-09
MIN_API_TOKEN_LENGTH = 16


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


@dataclass(frozen=True)
class KafkaSecurity:
    """TLS/SASL settings passed through to the Kafka client (all optional)."""

    protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
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
    api_tokens: tuple[str, ...] = field(default=(), repr=False)
    api_tokens_file: str | None = None
    processed_cache: str = "table"  # the processed-eventId cache: a Faust table, or this process's memory
    processed_cache_retention_s: float = 7 * 86400.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Read and check every setting; raise ConfigError naming the first bad one."""
        bootstrap = _required(env, "KAFKA_BOOTSTRAP_SERVERS")
        for server in bootstrap.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigError(f"KAFKA_BOOTSTRAP_SERVERS must be host:port[,host:port], got {bootstrap!r}")
        database_url = _required(env, "DATABASE_URL")
        if urlparse(database_url).scheme not in ("postgresql", "postgres"):
            raise ConfigError("DATABASE_URL must be a postgresql:// URL")
        mongodb_uri = _required(env, "MONGODB_URI")
        if urlparse(mongodb_uri).scheme not in ("mongodb", "mongodb+srv"):
            raise ConfigError("MONGODB_URI must be a mongodb:// or mongodb+srv:// URI")
        event_format = env.get("EVENT_FORMAT", "avro").strip().lower() or "avro"
        if event_format not in ("json", "avro"):
            raise ConfigError(f"EVENT_FORMAT must be 'avro' or 'json', got {event_format!r}")
        registry_url = env.get("SCHEMA_REGISTRY_URL", "").strip() or None
        if event_format == "avro" and registry_url is None:
            raise ConfigError("EVENT_FORMAT=avro (the default) needs SCHEMA_REGISTRY_URL; set it, or EVENT_FORMAT=json")
        if registry_url is not None and urlparse(registry_url).scheme not in ("http", "https"):
            raise ConfigError("SCHEMA_REGISTRY_URL must be an http:// or https:// URL")
        log_level = env.get("LOG_LEVEL", "INFO").strip().upper() or "INFO"
        if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ConfigError(f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {log_level!r}")
        log_format = env.get("LOG_FORMAT", "text").strip().lower() or "text"
        if log_format not in ("text", "json"):
            raise ConfigError(f"LOG_FORMAT must be 'text' or 'json', got {log_format!r}")
        protocol = env.get("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT").strip().upper() or "PLAINTEXT"
        if protocol not in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"):
            raise ConfigError(
                f"KAFKA_SECURITY_PROTOCOL must be PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL, got {protocol!r}"
            )
        api_tokens_text = env.get("API_TOKENS", "").strip()
        api_tokens_file = env.get("API_TOKENS_FILE", "").strip() or None
        if api_tokens_text and api_tokens_file:
            raise ConfigError("API_TOKENS and API_TOKENS_FILE are both set; set one of them")
        if api_tokens_file:
            api_tokens = read_api_tokens_file(api_tokens_file)
        else:
            api_tokens = parse_api_tokens(api_tokens_text) if api_tokens_text else ()
        processed_cache = env.get("PROCESSED_CACHE", "table").strip().lower() or "table"
        if processed_cache not in ("table", "memory"):
            raise ConfigError(f"PROCESSED_CACHE must be 'table' or 'memory', got {processed_cache!r}")
        retention_days = _float(env, "PROCESSED_CACHE_RETENTION_DAYS", 7.0)
        if retention_days <= 0:
            raise ConfigError("PROCESSED_CACHE_RETENTION_DAYS must be more than 0")
        return cls(
            kafka_bootstrap_servers=bootstrap,
            database_url=database_url,
            mongodb_uri=mongodb_uri,
            mongodb_database=env.get("MONGODB_DATABASE", "customer").strip() or "customer",
            schema_registry_url=registry_url,
            event_format=event_format,
            web_port=_int(env, "WEB_PORT", 6066, maximum=65535),
            web_host=env.get("WEB_HOST", "127.0.0.1").strip() or "127.0.0.1",
            log_level=log_level,
            log_format=log_format,
            batch_size=_int(env, "BATCH_SIZE", 100),
            projection_batch_size=_int(env, "PROJECTION_BATCH_SIZE", 500),
            batch_within_seconds=_float(env, "BATCH_WITHIN_SECONDS", 0.05),
            retry_backoff=_backoff(env),
            kafka_security=KafkaSecurity(
                protocol=protocol,
                sasl_mechanism=env.get("KAFKA_SASL_MECHANISM") or None,
                sasl_username=env.get("KAFKA_SASL_USERNAME") or None,
                sasl_password=env.get("KAFKA_SASL_PASSWORD") or None,
                ssl_cafile=env.get("KAFKA_SSL_CAFILE") or None,
            ),
            api_tokens=api_tokens,
            api_tokens_file=api_tokens_file,
            processed_cache=processed_cache,
            processed_cache_retention_s=retention_days * 86400.0,
        )
