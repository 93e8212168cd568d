"""Trace context across Kafka: each consumed record's W3C ``traceparent`` is continued, not dropped.

A record's context is ``Record.trace_context`` (stream/records.py): a missing, null, non-UTF-8
or malformed ``traceparent`` is no context, never an error.

One span covers a whole batch, so the rule for where it belongs (``causes``) is the same
wherever a batch is traced (``consume_user_registered_event``, ``project_read_model``):

- a batch of exactly one record with a valid context: that context is the span's *parent*,
  so the producer's trace and ours are literally one trace;
- otherwise: the span starts where it is (in the agent: a new trace) with one *link* per
  record that carried a valid context. A span has one parent; links are how OpenTelemetry
  says "this work was caused by these several others".

Each CustomerRegistered still continues the trace of the UserRegistered that caused it,
whatever the batch: the publisher writes its ``traceparent`` from a per-message span in
that trace (adapters/kafka.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind

from acme_customer.stream.records import Record

tracer = trace.get_tracer("acme_customer")


@dataclass(frozen=True)
class Causes:
    """Where a batch's span belongs: under ``parent`` (None: the current context), linked to ``links``."""

    parent: Context | None
    links: tuple[Link, ...]


def causes(contexts: Sequence[Context | None]) -> Causes:
    """The parent (a batch of one record with a context) or the links (any other batch) of a batch's span."""
    if len(contexts) == 1 and contexts[0] is not None:
        return Causes(contexts[0], ())
    links = tuple(Link(trace.get_current_span(context).get_span_context()) for context in contexts if context)
    return Causes(None, links)


def causes_of(records: Sequence[Record]) -> Causes:
    """``causes`` of the records' own contexts."""
    return causes([record.trace_context for record in records])


@contextmanager
def consuming(span_name: str, topic: str, records: Sequence[Record]) -> Iterator[Span]:
    """The current span while one consumed batch is processed: a child of, or linked to, its records' traces."""
    batch = causes_of(records)
    with tracer.start_as_current_span(
        span_name,
        context=batch.parent,
        kind=SpanKind.CONSUMER,
        links=batch.links,
        attributes={
            "messaging.system": "kafka",
            "messaging.source.name": topic,
            "messaging.batch.message_count": len(records),
        },
    ) as span:
        yield span
