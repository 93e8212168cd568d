"""Metrics (the story's names and labels) and logging set-up. No PII in labels or logs at INFO+."""

from __future__ import annotations

import logging
import re

from prometheus_client import Counter, Histogram

customer_created_total = Counter(
    "customer_created_total",
    "UserRegistered events handled, by outcome (created, duplicate, rejected)",
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
dead_lettered_total = Counter("events_dead_lettered_total", "Records sent to the DLQ", ["error_class"])
processing_attempts_total = Counter(
    "processing_attempts_total", "Attempts to process a batch, by outcome (ok, retry, exhausted)", ["agent", "outcome"]
)

_LABEL_SAFE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")


def safe_label(value: object) -> str:
    """A bounded, non-personal label value: well-formed identifiers only, otherwise 'other'."""
    return value if isinstance(value, str) and _LABEL_SAFE.match(value) else "other"


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s")
    logging.getLogger("acme_customer").setLevel(level)
