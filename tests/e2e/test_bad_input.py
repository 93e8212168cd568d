"""Invariant 4 for bad input: every malformed record ends in the DLQ with its reason, unchanged, and
nothing of it is written; the valid events around it all become customers; the worker stays ready."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from acme_customer.adapters.codec import MAX_VALUE_BYTES
from tests.e2e.conftest import Stack, Worker, as_record, http_json, user_registered, wait_for

pytestmark = pytest.mark.e2e

USER_EVENTS = "identity.user.events"
DLQ = "identity.user.events.dlq"
CUSTOMER_EVENTS = "customer.events"
DLQ_HEADERS = (
    "x-error-class",
    "x-error-message",
    "x-attempts",
    "x-original-topic",
    "x-original-partition",
    "x-original-offset",
)
OVERSIZED_BYTES = 2_000_000  # over what the service reads, under the topic's 4 MiB
RUN = uuid.uuid4().hex[:12]  # keeps this run's keys apart from earlier runs' on the same topics


@dataclass(frozen=True)
class Bad:
    kind: str
    value: bytes
    reason: str | Callable[[str], bool]  # the exact x-error-message, or a check of it
    user_id: str | None = None  # where the record carries a (valid) userId
    event_id: str | None = None
    email: str | None = None

    @property
    def key(self) -> bytes:
        return f"bad-{self.kind}-{RUN}".encode()


def _event_with(change: Callable[[dict[str, Any]], None], **kwargs: Any) -> dict[str, Any]:
    event = user_registered(**kwargs)
    change(event)
    return event


def _bad(kind: str, event: dict[str, Any], reason: str) -> Bad:
    payload = event.get("payload") or {}
    user_id = payload.get("userId") if isinstance(payload, dict) else None
    email = payload.get("email") if isinstance(payload, dict) else None
    return Bad(
        kind,
        json.dumps(event).encode(),
        reason,
        user_id=user_id if isinstance(user_id, str) and _is_uuid(user_id) else None,
        event_id=event.get("eventId"),
        email=email if isinstance(email, str) else None,
    )


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def _oversized() -> Bad:
    event = user_registered()
    event["padding"] = ""
    overhead = len(json.dumps(event).encode())
    event["padding"] = "x" * (OVERSIZED_BYTES - overhead)
    value = json.dumps(event).encode()
    assert len(value) == OVERSIZED_BYTES
    return Bad(
        "oversized",
        value,
        f"value: {OVERSIZED_BYTES} bytes, more than the {MAX_VALUE_BYTES} this service reads",
        user_id=event["payload"]["userId"],
        event_id=event["eventId"],
        email=event["payload"]["email"],
    )


def _set_payload(field: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(event: dict[str, Any]) -> None:
        event["payload"][field] = value

    return change


def _non_uuid_user(event: dict[str, Any]) -> None:
    event["payload"]["userId"] = event["aggregateId"] = "user-42"


def _bad_records() -> list[Bad]:
    long_email = "a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 63
    assert len(long_email) == 256
    in_array = user_registered()
    return [
        Bad("not-json", b"{oops", "value: not Avro or JSON"),
        Bad("not-utf8", b'{"eventType": "\xff\xfe"}', "value: not Avro or JSON"),
        Bad("empty", b"", "value: empty"),
        # a real Avro decoder would refuse this too (no such schema, no valid body), with its own words
        Bad("avro-magic", b"\x00\x00\x00\x7f\xff\x02junk", lambda message: message.startswith("value: ")),
        Bad("json-null", b"null", "event: expected a JSON object, got null"),
        Bad(
            "json-array",
            json.dumps([in_array]).encode(),
            "event: expected a JSON object, got an array",
            user_id=in_array["payload"]["userId"],
            event_id=in_array["eventId"],
            email=in_array["payload"]["email"],
        ),
        _bad("missing-payload", _event_with(lambda e: e.pop("payload")), "payload: missing"),
        _bad("non-uuid-user-id", _event_with(_non_uuid_user), "payload.userId: not a UUID"),
        _bad("long-first-name", user_registered(first_name="A" * 51), "payload.firstName: longer than 50 characters"),
        _bad("blank-last-name", user_registered(last_name=" \t  "), "payload.lastName: empty or only whitespace"),
        _bad(
            "control-in-name", user_registered(first_name="Ja\x07ne"), "payload.firstName: contains control characters"
        ),
        _bad("nul-in-name", user_registered(last_name="Do\x00e"), "payload.lastName: contains a NUL character"),
        _bad(
            "surrogate-in-name",
            user_registered(first_name="Ja\ud800ne"),
            "payload.firstName: not valid Unicode (an unpaired surrogate)",
        ),
        _bad("invalid-email", user_registered(email="jane.doe(at)example.com"), "payload.email: not an email address"),
        _bad("long-email", user_registered(email=long_email), "payload.email: longer than 255 characters"),
        _bad(
            "opt-in-yes",
            _event_with(_set_payload("marketingOptIn", "yes")),
            "payload.marketingOptIn: expected a boolean, got a string",
        ),
        _bad(
            "first-name-number",
            _event_with(_set_payload("firstName", 42)),
            "payload.firstName: expected a string, got a number",
        ),
        _bad(
            "bad-registered-at",
            user_registered(registered_at="yesterday"),
            "payload.registeredAt: not an RFC 3339 date-time",
        ),
        _bad("missing-event-id", _event_with(lambda e: e.pop("eventId")), "eventId: missing"),
        _oversized(),
    ]


@dataclass
class Run:
    bad: list[Bad]
    valid: list[dict[str, Any]]
    produced: dict[bytes, tuple[int, int]]  # key -> (partition, offset) on identity.user.events
    dead: dict[bytes, list[Any]]  # key -> DLQ records with that key
    input_partitions: int
    published: list[dict[str, Any]]  # CustomerRegistered of this run, as far as read


@pytest.fixture(scope="module")
def run(stack: Stack, worker: Worker) -> Run:
    bad = _bad_records()
    valid = [user_registered(first_name=f"Valid{index}") for index in range(len(bad) + 1)]
    records: list[tuple[bytes | None, bytes]] = []
    for index, good in enumerate(valid):  # valid, bad, valid, bad, …, valid
        records.append(as_record(good))
        if index < len(bad):
            records.append((bad[index].key, bad[index].value))
    keys = {key for key, _ in records}
    assert len(keys) == len(records), "every record needs a key of its own"

    input_since = stack.end_offsets(USER_EVENTS)
    dlq_since = stack.end_offsets(DLQ)
    out_since = stack.end_offsets(CUSTOMER_EVENTS)
    stack.produce(records)

    def keyed(found: list[Any]) -> dict[bytes, list[Any]]:
        mine: dict[bytes, list[Any]] = {}
        for record in found:
            if record.key in keys:
                mine.setdefault(record.key, []).append(record)
        return mine

    on_input = keyed(stack.read_since(USER_EVENTS, input_since, lambda found: len(keyed(found)) == len(keys)))
    produced = {key: (found[0].partition, found[0].offset) for key, found in on_input.items()}

    # read on until every bad key arrived, or a deadline: the per-kind tests then say which are missing
    bad_keys = {item.key for item in bad}
    deadline = time.monotonic() + 60
    dead_found = stack.read_since(
        DLQ,
        dlq_since,
        lambda found: bad_keys <= set(keyed(found)) or time.monotonic() > deadline,
        timeout=90,
    )
    causes = {event["eventId"] for event in valid}
    deadline = time.monotonic() + 60

    def causation_ids(found: list[Any]) -> set[str]:
        return {event.get("causationId") for event in stack.decode([record.value for record in found])}

    out_found = stack.read_since(
        CUSTOMER_EVENTS,
        out_since,
        lambda found: causes <= causation_ids(found) or time.monotonic() > deadline,
        timeout=90,
    )
    return Run(
        bad=bad,
        valid=valid,
        produced=produced,
        dead=keyed(dead_found),
        input_partitions=len(input_since),
        published=stack.decode([record.value for record in out_found]),
    )


def _headers(record: Any) -> dict[str, str]:
    names = [name for name, _ in record.headers]
    for name in DLQ_HEADERS:
        assert names.count(name) == 1, f"header {name} appears {names.count(name)} times"
    return {name: value.decode() for name, value in record.headers}


@pytest.mark.parametrize("kind", [item.kind for item in _bad_records()])
def test_a_malformed_record_ends_in_the_dlq_unchanged_with_its_reason(run: Run, kind: str) -> None:
    (item,) = [candidate for candidate in run.bad if candidate.kind == kind]
    assert item.key in run.dead, f"{kind}: not on {DLQ} within 60 s"
    (record,) = run.dead[item.key]  # exactly once
    assert record.key == item.key
    assert record.value == item.value, "the original bytes, unchanged"
    headers = _headers(record)
    assert headers["x-error-class"] == "InvalidEvent"
    assert headers["x-attempts"] == "1"
    assert headers["x-original-topic"] == USER_EVENTS
    partition, offset = int(headers["x-original-partition"]), int(headers["x-original-offset"])
    assert 0 <= partition < run.input_partitions
    assert (partition, offset) == run.produced[item.key]
    message = headers["x-error-message"]
    if callable(item.reason):
        assert item.reason(message), f"{kind}: unexpected reason {message!r}"
    else:
        assert message == item.reason


def test_the_dlq_reasons_carry_no_email_address(run: Run) -> None:
    messages = [_headers(record)["x-error-message"] for found in run.dead.values() for record in found]
    assert len(messages) == len(run.bad)
    emails = {item.email for item in run.bad if item.email}
    for message in messages:
        assert "@" not in message
        assert not any(email.strip() and email.strip() in message for email in emails)


def test_the_valid_events_between_them_all_become_customers_and_documents(stack: Stack, run: Run) -> None:
    user_ids = [event["payload"]["userId"] for event in run.valid]

    def customers() -> bool:
        rows = stack.sql("SELECT COUNT(*) FROM customers WHERE user_id = ANY(%s::uuid[])", (user_ids,))
        return rows == [(len(user_ids),)]

    wait_for(customers, 30, "a customer for every valid event")
    collection = stack.mongo()
    wait_for(
        lambda: collection.count_documents({"userId": {"$in": user_ids}}) == len(user_ids),
        30,
        "a read-model document for every valid event",
    )
    rows = stack.sql(
        "SELECT c.user_id::text, c.first_name, d.causation_id::text FROM customers c"
        " JOIN event_store d ON d.aggregate_id = c.id WHERE c.user_id = ANY(%s::uuid[])",
        (user_ids,),
    )
    assert {row[0]: (row[1], row[2]) for row in rows} == {
        event["payload"]["userId"]: (event["payload"]["firstName"], event["eventId"]) for event in run.valid
    }
    published = {envelope["causationId"] for envelope in run.published}
    assert {event["eventId"] for event in run.valid} <= published


def test_nothing_of_the_rejected_records_is_written(stack: Stack, run: Run) -> None:
    # every bad record is in the DLQ, so each was handled (on whatever partition it landed)
    # before its absence is checked; and the last valid one is in, so the batches around them too
    assert {item.key for item in run.bad} <= set(run.dead)
    wait_for(
        lambda: stack.sql("SELECT 1 FROM customers WHERE user_id = %s", (run.valid[-1]["payload"]["userId"],)),
        30,
        "the last valid event's customer",
    )
    user_ids = [item.user_id for item in run.bad if item.user_id]
    event_ids = [item.event_id for item in run.bad if item.event_id and _is_uuid(item.event_id)]
    assert len(user_ids) >= 10
    assert stack.sql("SELECT user_id FROM customers WHERE user_id = ANY(%s::uuid[])", (user_ids,)) == []
    assert stack.sql("SELECT event_id FROM processed_events WHERE event_id = ANY(%s::uuid[])", (event_ids,)) == []
    assert stack.sql("SELECT event_id FROM event_store WHERE causation_id = ANY(%s::uuid[])", (event_ids,)) == []
    assert stack.mongo().count_documents({"userId": {"$in": user_ids}}) == 0
    assert not {envelope["causationId"] for envelope in run.published} & set(event_ids)
    emails = [item.email for item in run.bad if item.email]
    assert stack.sql("SELECT id FROM customers WHERE email = ANY(%s)", (emails,)) == []


def test_the_worker_is_still_ready_and_consuming_after_the_bad_input(stack: Stack, run: Run, worker: Worker) -> None:
    status, body = http_json(f"{worker.url}/ready")
    assert status == 200, body
    assert body["status"] == "UP"
    assert body["checks"] == {"postgresql": "UP", "mongodb": "UP", "kafka": "UP"}
    later = user_registered()
    stack.produce([as_record(later)])
    wait_for(
        lambda: stack.sql("SELECT 1 FROM customers WHERE user_id = %s", (later["payload"]["userId"],)),
        30,
        "a customer for an event produced after the bad input",
    )
