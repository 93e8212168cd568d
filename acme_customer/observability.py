"""Metrics (the story's names and labels) and the tracing set-up. No PII in labels (logs: logs.py)."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import Counter, Gauge, Histogram

from acme_customer.errors import ConfigError

customer_created_total = Counter(
    "customer_created_total",
    "UserRegistered events handled, by outcome (created, duplicate, rejected; failed: dead-lettered after the retries)",
    ["status"],
)
customer_creation_duration_seconds = Histogram(
    "customer_creation_duration_seconds",
    "Time to write one batch of customers in PostgreSQL (one transaction)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
event_processing_lag_seconds = Histogram(
    "event_processing_lag_seconds",
    "Time from an event's timestamp to the end of its processing",
    ["event_type"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0),
)
read_model_projection_duration_seconds = Histogram(
    "read_model_projection_duration_seconds",
    "Time to project one batch of CustomerRegistered events into MongoDB",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
events_ignored_total = Counter(
    "identity_events_ignored_total", "Identity events of other types, acknowledged without acting", ["event_type"]
)
customer_events_ignored_total = Counter(
    "customer_events_ignored_total",
    "customer.events records of other types, acknowledged without projecting",
    ["event_type"],
)
dead_lettered_total = Counter(
    "events_dead_lettered_total", "Records Kafka acknowledged on a DLQ (either topic's)", ["error_class"]
)
processing_attempts_total = Counter(
    "processing_attempts_total", "Attempts to process a batch, by outcome (ok, retry, exhausted)", ["agent", "outcome"]
)
processed_cache_entries = Gauge(
    "processed_cache_entries", "Entries in this worker's processed-eventId table (the partitions it holds)"
)
processed_cache_hits_total = Counter(
    "processed_cache_hits_total", "Redeliveries found in the processed-eventId cache (counted as duplicate, no query)"
)
processed_cache_recovery_seconds = Histogram(
    "processed_cache_recovery_seconds",
    "From a partition assignment to the end of table recovery (at start and at each rebalance)",
    buckets=(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0),
)
consumer_lag_records = Gauge(
    "consumer_lag_records",
    "Records on an input partition this worker holds that the group has not committed (end - committed)",
    ["topic", "partition"],
)


def set_consumer_lag(lags: Mapping[tuple[str, int], int]) -> None:
    """The lag of the partitions this worker holds now; partitions it gave up are no longer reported."""
    consumer_lag_records.clear()
    for (topic, partition), lag in lags.items():
        consumer_lag_records.labels(topic=topic, partition=str(partition)).set(lag)


# The identity service's event types this service knows of; any other value is "other", so a
# producer sending garbage types cannot grow a time series per distinct string.
KNOWN_IDENTITY_EVENT_TYPES = frozenset(
    {
        "UserRegistered",
        "UserEmailChanged",
        "UserPasswordChanged",
        "UserProfileUpdated",
        "UserDeactivated",
        "UserReactivated",
        "UserDeleted",
    }
)


KNOWN_CUSTOMER_EVENT_TYPES = frozenset({"CustomerRegistered", "CustomerProfileUpdated", "CustomerDeleted"})


def customer_event_type_label(value: object) -> str:
    """``event_type_label`` for customer.events."""
    return event_type_label(value, KNOWN_CUSTOMER_EVENT_TYPES)


def event_type_label(value: object, known: frozenset[str] = KNOWN_IDENTITY_EVENT_TYPES) -> str:
    """A bounded, non-personal label value: one of the ``known`` types, otherwise 'other'."""
    return value if isinstance(value, str) and value in known else "other"


def configure_tracing(env: Mapping[str, str], service_name: str = "customer-service") -> str | None:
    """Install an SDK tracer provider when ``OTEL_TRACES_EXPORTER`` asks for one; return its name.

    The code only uses the OpenTelemetry API (spans are no-ops without an SDK). ``console``
    needs the ``otel`` extra; ``otlp`` also needs an OTLP exporter package installed.
    """
    exporter_name = env.get("OTEL_TRACES_EXPORTER", "none").strip().lower()
    if exporter_name in ("", "none"):
        return None
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
    except ImportError as error:
        raise ConfigError(
            "OTEL_TRACES_EXPORTER is set but opentelemetry-sdk is not installed (extra 'otel')"
        ) from error
    exporter: SpanExporter
    if exporter_name == "console":
        exporter = ConsoleSpanExporter()
    elif exporter_name == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as error:
            raise ConfigError("OTEL_TRACES_EXPORTER=otlp needs opentelemetry-exporter-otlp-proto-http") from error
        exporter = OTLPSpanExporter()
    else:
        raise ConfigError(f"OTEL_TRACES_EXPORTER must be none, console or otlp, got {exporter_name!r}")
    service = env.get("OTEL_SERVICE_NAME", service_name)
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter_name
