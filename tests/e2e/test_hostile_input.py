"""Hostile input through a client we did not write: kcat (librdkafka), as many real producers are.

Malformed records of many kinds are interleaved with valid ones on one partition, with null
header values, binary header values, header names that are not UTF-8, null keys, tombstones and
every compression codec. Every record must end in exactly one state (a customer, skipped, or the
DLQ with a reason), the worker must stay up and stop on SIGTERM in time, and its committed offset must move past the
hostile batch, so that a restart does not meet it again (no poison pill).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from acme_customer.adapters.topics import read_topic
from tests.e2e.conftest import REPO, Stack, Worker, http_json, user_registered, wait_for

pytestmark = pytest.mark.e2e

USER_EVENTS = "identity.user.events"
DLQ = "identity.user.events.dlq"
PARTITION = 0
RUN = uuid.uuid4().hex[:8]
CODECS = ("none", "gzip", "snappy", "lz4", "zstd")


@dataclass
class Case:
    """One record as kcat sends it, and what it must become."""

    name: str
    value: bytes | None  # None: a null value (tombstone)
    key: bytes | None = b"k"
    headers: list[str] = field(default_factory=list)  # kcat -H arguments ("name" alone: a null value)
    codec: str = "none"
    reason: str | None = None  # the DLQ reason it must get; None for a record that must succeed
    user_id: str | None = None
    skipped: bool = False  # another event type: acknowledged, neither a customer nor a dead letter


def _valid(name: str, **case: Any) -> Case:
    event = user_registered(first_name=f"Hostile{name.title().replace('-', '')}"[:50])
    return Case(name, json.dumps(event).encode(), user_id=event["payload"]["userId"], **case)


def _malformed(name: str, value: bytes | None, reason: str, **case: Any) -> Case:
    return Case(name, value, reason=reason, **case)


def _event(**payload_changes: Any) -> bytes:
    event = user_registered()
    event["payload"].update(payload_changes)
    return json.dumps(event).encode()  # ensure_ascii: a lone surrogate travels as "\ud800"


def _bom_prefixed() -> Case:
    # RFC 8259 lets a parser ignore a byte order mark, and Python's does: a valid event
    case = _valid("utf8-bom")
    assert case.value is not None
    case.value = b"\xef\xbb\xbf" + case.value
    return case


def _cases() -> list[Case]:
    nested = b"[" * 100_000 + b"]" * 100_000
    future_version = user_registered()
    future_version["eventVersion"] = "2.0"
    valid = [
        _valid("null-header-value", headers=["x-null", "x-empty="]),
        _valid("binary-header-value", headers=["x-binary=\udcff\udcfe"]),  # the bytes ff fe (surrogateescape)
        # a header *name* that is not UTF-8: legal in Kafka; aiokafka alone stops the worker on it
        _valid("non-utf8-header-name", headers=["bad\udcffname=v", "x-null"], codec="zstd"),
        _valid("null-key", key=None),
        _bom_prefixed(),
        _valid("garbage-traceparent", headers=["traceparent=not-a-trace-context"]),
        _valid("many-null-headers", headers=[f"x-null-{n}" for n in range(50)]),
        *(_valid(f"codec-{codec}", codec=codec, headers=["x-null"]) for codec in CODECS),
    ]
    malformed = [
        _malformed("tombstone", None, "value: null (a tombstone)"),
        _malformed("tombstone-null-key", None, "value: null (a tombstone)", key=None),
        _malformed("empty", b"", "value: empty", headers=["x-null"]),
        _malformed("random-bytes", b"\xff\x00\x01\x1f" + bytes(range(0x20, 0x100)), "value: not Avro or JSON"),
        _malformed("random-bytes-non-utf8-header-name", b"\xfe\xfd", "value: not Avro or JSON", headers=["\udcfe="]),
        _malformed("nested", nested, "value: JSON nested too deeply"),
        _malformed("json-string", b'"UserRegistered"', "event: expected a JSON object, got a string"),
        _malformed(
            "surrogate-first-name",
            _event(firstName="Ja\ud800ne"),
            "payload.firstName: not valid Unicode (an unpaired surrogate)",
            headers=["x-null"],
            codec="zstd",
        ),
        _malformed("nul-last-name", _event(lastName="Do\x00e"), "payload.lastName: contains a NUL character"),
        _malformed(
            "surrogate-email",
            _event(email="\udfffjane@example.com"),
            "payload.email: not valid Unicode (an unpaired surrogate)",
            codec="lz4",
        ),
        _malformed(
            "opt-in-number", _event(marketingOptIn=1.5), "payload.marketingOptIn: expected a boolean, got a number"
        ),
        _malformed(
            "registered-before-year-one",
            _event(registeredAt="0001-01-01T00:30:00+01:00"),
            "payload.registeredAt: not an RFC 3339 date-time",
        ),
        _malformed(
            "major-version-2",
            json.dumps(future_version).encode(),
            "eventVersion: unsupported major version (this service reads 1.x)",
        ),
        _malformed(
            "oversized",
            b'{"pad": "' + b"x" * 2_000_000 + b'"}',
            "value: 2000011 bytes, more than the 1048576 this service reads",
        ),
    ]
    skipped = [
        Case("garbage-event-type", json.dumps({"eventType": "\u2603" * 40}).encode(), skipped=True, headers=["x-null"]),
    ]
    # interleave: valid, malformed, valid, malformed, … so that every bad record has valid neighbours
    cases: list[Case] = []
    for index in range(max(len(valid), len(malformed))):
        cases.extend(valid[index : index + 1])
        cases.extend(malformed[index : index + 1])
    return [*cases, *skipped]


def _kcat(bootstrap: str, case: Case, number: int) -> None:
    """Produce one record with kcat: its key, value, headers and codec exactly as the case says."""
    arguments = ["kcat", "-P", "-b", bootstrap, "-t", USER_EVENTS, "-p", str(PARTITION)]
    arguments += ["-X", f"compression.codec={case.codec}", "-X", "message.max.bytes=4000000"]
    for header in [*case.headers, f"x-case={RUN}-{number}"]:
        arguments += ["-H", header]  # str arguments are encoded with surrogateescape: raw bytes pass
    # one record per call, ended by a delimiter no value holds; -K splits key from value, and -Z
    # turns an empty key or value into a null one (used only where the case wants a null)
    arguments += ["-D", "\\x1e\\x1d\\x1c"]
    framed = case.value or b""
    if case.key is not None or case.value is None:
        arguments += ["-K", "\\x1f"]
        framed = (case.key or b"") + b"\x1f" + framed
    if case.value is None:
        arguments.append("-Z")
    subprocess.run(arguments, input=framed + b"\x1e\x1d\x1c", check=True, timeout=60)


@dataclass
class Hostile:
    cases: list[Case]
    offsets: dict[str, int]  # case name -> offset on the partition
    dead: dict[int, dict[str, str]]  # original offset -> DLQ headers
    worker: Worker
    log_from: int  # the worker log's size before the hostile batch


def _read(bootstrap: str, topic: str, since: int, until_count: int, timeout: float) -> list[Any]:
    partition = PARTITION if topic == USER_EVENTS else 0
    return asyncio.run(
        read_topic(
            bootstrap, topic, since={partition: since}, until=lambda found: len(found) >= until_count, timeout=timeout
        )
    )


def _committed(bootstrap: str) -> int | None:
    async def read() -> int | None:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id="customer-service", enable_auto_commit=False)
        await consumer.start()
        try:
            offset = await consumer.committed(TopicPartition(USER_EVENTS, PARTITION))
            return None if offset is None else int(offset)
        finally:
            await consumer.stop()

    return asyncio.run(read())


def _case_of(record: Any) -> str | None:
    for name, value in record.headers:
        if name == "x-case" and value is not None and value.decode().startswith(f"{RUN}-"):
            return str(value.decode())
    return None


@pytest.fixture(scope="module")
def hostile(stack: Stack, worker: Worker) -> Hostile:
    assert shutil.which("kcat"), "kcat (Debian's librdkafka CLI) is needed: .ci/run installs it"
    log_from = worker.log_path.stat().st_size
    cases = _cases()
    input_since = stack.end_offsets(USER_EVENTS)[PARTITION]
    dlq_since = stack.end_offsets(DLQ)[0]
    for number, case in enumerate(cases):
        _kcat(stack.bootstrap, case, number)
    produced = _read(stack.bootstrap, USER_EVENTS, input_since, len(cases), timeout=60)
    names = {f"{RUN}-{number}": case.name for number, case in enumerate(cases)}
    offsets = {names[tag]: record.offset for record in produced if (tag := _case_of(record)) in names}
    assert len(offsets) == len(cases), f"kcat produced {len(offsets)} of {len(cases)} records"
    bad = [case for case in cases if case.reason is not None]
    letters = _read(stack.bootstrap, DLQ, dlq_since, len(bad), timeout=90)
    dead = {}
    for letter in letters:
        headers = {name: (value or b"").decode(errors="replace") for name, value in letter.headers}
        if headers.get("x-original-topic") == USER_EVENTS and headers.get("x-original-partition") == str(PARTITION):
            dead[int(headers["x-original-offset"])] = headers
    return Hostile(cases, offsets, dead, worker, log_from)


def test_every_malformed_record_is_in_the_dlq_by_its_offset_with_its_reason(hostile: Hostile) -> None:
    expected = {hostile.offsets[case.name]: (case.name, case.reason) for case in hostile.cases if case.reason}
    found = {
        offset: (expected[offset][0], hostile.dead[offset].get("x-error-message"))
        for offset in expected
        if offset in hostile.dead
    }
    assert found == expected
    for offset in expected:
        assert hostile.dead[offset]["x-error-class"] == "InvalidEvent"
        assert hostile.dead[offset]["x-attempts"] == "1"


def test_every_valid_record_becomes_a_customer_and_none_is_dead_lettered(stack: Stack, hostile: Hostile) -> None:
    valid = [case for case in hostile.cases if case.user_id]
    user_ids = [case.user_id for case in valid]

    def customers() -> bool:
        rows = stack.sql("SELECT COUNT(*) FROM customers WHERE user_id = ANY(%s::uuid[])", (user_ids,))
        return rows == [(len(user_ids),)]

    wait_for(customers, 30, "a customer for every valid record, whatever its headers, key or codec")
    valid_offsets = {hostile.offsets[case.name] for case in valid}
    assert valid_offsets.isdisjoint(hostile.dead)


def test_another_event_type_with_a_garbage_name_is_skipped_not_dead_lettered(hostile: Hostile) -> None:
    (skipped,) = [case for case in hostile.cases if case.skipped]
    assert hostile.offsets[skipped.name] not in hostile.dead


def test_the_worker_still_answers_and_stops_on_sigterm_within_ten_seconds(hostile: Hostile) -> None:
    status, body = http_json(f"{hostile.worker.url}/health")
    assert (status, body) == (200, {"status": "UP"})
    started = time.monotonic()
    assert hostile.worker.stop(timeout=10) == 0
    assert time.monotonic() - started < 10


def test_the_committed_offset_moved_past_the_hostile_batch_so_a_restart_does_not_meet_it(
    stack: Stack, hostile: Hostile
) -> None:
    last = max(hostile.offsets.values())
    if hostile.worker.process is not None and hostile.worker.process.poll() is None:
        assert hostile.worker.stop(timeout=10) == 0
    wait_for(lambda: (_committed(stack.bootstrap) or 0) > last, 30, f"a committed offset past {last}")
    hostile.worker.start().wait_ready()  # the session's worker again, for the modules after this one
    after = user_registered(first_name="AfterTheHostileBatch")
    _kcat(stack.bootstrap, Case("after", json.dumps(after).encode()), 10_000)
    wait_for(
        lambda: stack.sql("SELECT 1 FROM customers WHERE user_id = %s", (after["payload"]["userId"],)),
        30,
        "a customer for a record produced after the restart",
    )
    with hostile.worker.log_path.open("rb") as log:
        log.seek(hostile.log_from)
        since_the_batch = log.read().decode(errors="replace")
    assert "Traceback" not in since_the_batch, (
        f"the worker crashed or hit an unexpected error: {hostile.worker.log_path}"
    )


def test_kcat_is_the_librdkafka_client_not_ours() -> None:
    version = subprocess.run(["kcat", "-V"], capture_output=True, text=True, check=True, cwd=REPO).stdout
    assert "librdkafka" in version
