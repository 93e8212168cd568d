"""Reading the spans the code records, for the unit and integration tiers alike.

The code only uses the OpenTelemetry API; ``span_exporter`` installs an SDK provider with an
in-memory exporter once per session (the global provider can be set only once per process),
``spans`` clears it around each test.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


@pytest.fixture(scope="session")
def span_exporter() -> Iterator[InMemorySpanExporter]:
    """An in-memory exporter on the global SDK provider (installed here unless one already is)."""
    memory = InMemorySpanExporter()
    processor = SimpleSpanProcessor(memory)
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        current.add_span_processor(processor)
    else:
        provider = TracerProvider()
        provider.add_span_processor(processor)
        trace.set_tracer_provider(provider)
        if trace.get_tracer_provider() is not provider:
            pytest.fail("another (non-SDK) global tracer provider is already installed; spans cannot be read")
    yield memory
    processor.shutdown()  # the provider stays; the exporter stops collecting


@pytest.fixture
def spans(span_exporter: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    span_exporter.clear()
    yield span_exporter
    span_exporter.clear()


def named(finished: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [span for span in finished if span.name == name]


def only(finished: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    found = named(finished, name)
    assert len(found) == 1, f"expected one {name} span, found {len(found)} among {[s.name for s in finished]}"
    return found[0]


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def attribute_values(span: ReadableSpan) -> list[str]:
    """Every attribute value of the span, of its events and of its links, as text."""
    mappings: list[Any] = [
        span.attributes or {},
        *((event.attributes or {}) for event in span.events),
        *((link.attributes or {}) for link in span.links),
    ]
    values = []
    for mapping in mappings:
        for value in mapping.values():
            if isinstance(value, (list, tuple)):
                values.extend(str(item) for item in value)
            else:
                values.append(str(value))
    return values


def assert_no_pii(finished: Sequence[ReadableSpan], personal_data: Iterable[str]) -> None:
    assert finished, "no spans were recorded"
    personal = [value.lower() for value in personal_data]
    assert personal, "no personal data to look for"
    for span in finished:
        for value in [span.name, *attribute_values(span)]:
            for item in personal:
                assert item not in value.lower(), f"PII {item!r} in span {span.name}: {value!r}"
