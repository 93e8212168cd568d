"""A real worker: one trace from the identity service's traceparent to the read model, and clean logs.

The worker runs with ``OTEL_TRACES_EXPORTER=console`` (its spans on stdout, beside Faust's
start banner) and each ``LOG_FORMAT`` (its logs on stderr). One UserRegistered with a known
``traceparent`` and distinctive personal data goes in; the test reads the CustomerRegistered
headers, the spans and every log line. It runs before the session's shared worker starts
(file order), so this worker owns every partition.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from tests.e2e.conftest import Stack, Worker, user_registered, wait_for

pytestmark = pytest.mark.e2e

FIRST_NAME, LAST_NAME = "Ottoline", "Quarrendon"


def console_spans(text: str) -> list[dict[str, Any]]:
    """The span objects ConsoleSpanExporter printed (indented JSON, each opening on a line of its own)."""
    decoder = json.JSONDecoder()
    found: list[dict[str, Any]] = []
    position = consumed = 0
    for line in text.splitlines(keepends=True):
        if position >= consumed and line.rstrip("\r\n") == "{":
            document, consumed = decoder.raw_decode(text, position)
            found.append(document)
        position += len(line)
    return found


def _continues(span: dict[str, Any], trace_id: str, parent: str) -> bool:
    """The span has ``parent`` (of trace ``trace_id``) as its parent, or a link to it."""
    if span["context"]["trace_id"] == trace_id and span["parent_id"] == parent:
        return True
    return any(
        link["context"]["trace_id"] == trace_id and link["context"]["span_id"] == parent
        for link in span.get("links", [])
    )


def produce(bootstrap: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> None:
    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait("identity.user.events", value, key=key, headers=headers)
        finally:
            await producer.stop()

    asyncio.run(send())


def header(record: Any, name: str) -> bytes | None:
    values = [value for key, value in record.headers if key == name]
    return values[0] if values else None


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_a_real_worker_keeps_one_trace_across_kafka_and_logs_no_personal_data(
    stack: Stack, tmp_path: Path, log_format: str
) -> None:
    trace_id, span_id = uuid.uuid4().int, random.getrandbits(63) + 1
    email = f"ottoline.{uuid.uuid4().hex[:8]}@example.net"
    event = user_registered(first_name=FIRST_NAME, last_name=LAST_NAME, email=email)
    user_id = event["payload"]["userId"]
    env = {**stack.env, "LOG_FORMAT": log_format, "OTEL_TRACES_EXPORTER": "console"}
    stdout, stderr = tmp_path / "stdout.log", tmp_path / "stderr.log"
    worker = Worker(env=env, log_path=stdout, stderr_path=stderr).start()
    try:
        worker.wait_ready()
        since = stack.end_offsets("customer.events")
        traceparent = f"00-{trace_id:032x}-{span_id:016x}-01".encode()
        produce(stack.bootstrap, user_id.encode(), json.dumps(event).encode(), [("traceparent", traceparent)])

        document = wait_for(lambda: stack.mongo().find_one({"userId": user_id}), 60, "the read-model document")

        def mine(records: list[Any]) -> list[Any]:
            ours = [record for record in records if header(record, "eventType") == b"CustomerRegistered"]
            return [record for record in ours if stack.decode([record.value])[0]["causationId"] == event["eventId"]]

        (published,) = mine(stack.read_since("customer.events", since, lambda found: bool(mine(found))))
    finally:
        assert worker.stop(timeout=30) == 0  # the span processor flushes at exit

    # the CustomerRegistered continues the identity service's trace ...
    out_traceparent = header(published, "traceparent")
    assert out_traceparent is not None
    assert out_traceparent.decode().split("-")[1] == f"{trace_id:032x}"
    # ... and so do the spans on both sides of customer.events
    # (a span over a batch of one record has that record's context as its parent; over several, it
    # links each: a redelivered leftover can share the batch, so either form continues the trace)
    spans = console_spans(stdout.read_text())
    identity, out_span = f"0x{trace_id:032x}", "0x" + out_traceparent.decode().split("-")[2]
    consumed = [span for span in spans if span["name"] == "consume_user_registered_event"]
    assert any(_continues(span, identity, f"0x{span_id:016x}") for span in consumed), consumed
    projected = [span for span in spans if span["name"] == "project_read_model"]
    assert any(_continues(span, identity, out_span) for span in projected), projected

    errors = stderr.read_text()
    lines = errors.splitlines()
    assert len(lines) > 20, errors  # Faust's start-up and shutdown are logged, not only ours
    for personal in (email, FIRST_NAME, LAST_NAME):
        assert personal.lower() not in errors.lower(), f"{personal!r} in the worker's log"
        assert personal.lower() not in stdout.read_text().lower(), f"{personal!r} in the worker's stdout (spans)"
    if log_format == "text":
        (created,) = [line for line in lines if f"eventId={event['eventId']}" in line]
        assert f"customerId={document['_id']} topic=identity.user.events" in created
        assert " outcome=created duration_ms=" in created
        return

    documents = [json.loads(line) for line in lines]  # every line of stderr is one JSON object
    for entry in documents:
        assert isinstance(entry, dict)
        assert {"timestamp", "level", "logger", "message"} <= set(entry), entry
    loggers = {entry["logger"].split(".")[0] for entry in documents}
    assert {"faust", "aiokafka", "acme_customer"} <= loggers
    (created,) = [entry for entry in documents if entry.get("eventId") == event["eventId"]]
    assert created["outcome"] == "created"
    assert created["customerId"] == document["_id"]
    assert created["topic"] == "identity.user.events"
    assert isinstance(created["partition"], int)
    assert isinstance(created["offset"], int)
    assert isinstance(created["duration_ms"], float)
    assert created["traceId"] == f"{trace_id:032x}"  # the log line is in the identity service's trace


def test_with_log_format_json_a_malformed_setting_is_one_json_line(stack: Stack, tmp_path: Path) -> None:
    env = {**stack.env, "LOG_FORMAT": "json", "DATABASE_URL": "mysql://nope"}
    worker = Worker(env=env, log_path=tmp_path / "stdout.log", stderr_path=tmp_path / "stderr.log").start()
    assert worker.process is not None

    assert worker.process.wait(timeout=60) == 2

    (line,) = (tmp_path / "stderr.log").read_text().splitlines()
    entry = json.loads(line)
    assert entry["level"] == "CRITICAL"
    assert entry["message"] == "acme-customer: configuration error: DATABASE_URL must be a postgresql:// URL"
