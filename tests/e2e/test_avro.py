"""The Avro wire format end to end: a real worker (EVENT_FORMAT=avro) against Kafka and the real registry.

Avro (and JSON) UserRegistered in, Avro CustomerRegistered out; evolved writers; bad Avro to the DLQ
with its reason; an unreachable registry at start; and a warm worker that keeps going while the
registry is down (the last test: it stops the shared registry and always starts it again).
"""

from __future__ import annotations

import asyncio
import copy
import io
import json
import re
import struct
import subprocess
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from schema_registry.client import AsyncSchemaRegistryClient
from schema_registry.client.schema import AvroSchema
from schema_registry.serializers.message_serializer import AsyncAvroMessageSerializer

from acme_customer.adapters.schemas import CUSTOMER_REGISTERED, USER_REGISTERED, load_schema
from acme_customer.domain.clock import parse_rfc3339
from tests.e2e.conftest import REPO, Stack, Worker, free_port, user_registered, wait_for
from tests.registry_stub import ErrorPage
from tests.story import STORY_CUSTOMER_REGISTERED

pytestmark = pytest.mark.e2e

USER_EVENTS = "identity.user.events"
USER_SUBJECT = "identity.user.events-value"
CUSTOMER_EVENTS = "customer.events"
CUSTOMER_SUBJECT = "customer.events-value"
DLQ = "identity.user.events.dlq"
RUN = uuid.uuid4().hex[:12]
CLI = str(REPO / ".venv" / "bin" / "acme-customer")

STORY = STORY_CUSTOMER_REGISTERED


# -- helpers ------------------------------------------------------------------------------------


def _with_payload_field(schema: dict[str, Any], field: dict[str, Any]) -> dict[str, Any]:
    changed = copy.deepcopy(schema)
    next(f for f in changed["fields"] if f["name"] == "payload")["type"]["fields"].append(field)
    return changed


def _without_payload_field(schema: dict[str, Any], name: str) -> dict[str, Any]:
    changed = copy.deepcopy(schema)
    payload = next(f for f in changed["fields"] if f["name"] == "payload")["type"]
    payload["fields"] = [f for f in payload["fields"] if f["name"] != name]
    return changed


def _scratch_subject() -> str:
    """A subject of this run for the evolved writers (the real subject's history stays as it is)."""
    return f"test.{RUN}.avro-e2e-{uuid.uuid4().hex[:8]}-value"


def _avro(stack: Stack, subject: str, schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    """The record as a producer with the registry writes it (registering the schema under ``subject``)."""

    async def encode() -> bytes:
        serializer = AsyncAvroMessageSerializer(AsyncSchemaRegistryClient(stack.env["SCHEMA_REGISTRY_URL"]))
        return await serializer.encode_record_with_schema(subject, AvroSchema(schema), record)

    return asyncio.run(encode())


def _registered_id(stack: Stack, subject: str, schema: dict[str, Any]) -> int:
    async def check() -> int:
        client = AsyncSchemaRegistryClient(stack.env["SCHEMA_REGISTRY_URL"])
        found = await client.check_version(subject, AvroSchema(schema))
        assert found is not None, f"{subject} does not hold that schema"
        return int(found.schema_id)

    return asyncio.run(check())


def _wire(schema_id: int, schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    """The Confluent wire format by hand (no registry needed)."""
    body = io.BytesIO()
    schemaless_writer(body, parse_schema(schema), record)
    return struct.pack(">bI", 0, schema_id) + body.getvalue()


def _unwire(value: bytes, schema: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    magic, schema_id = struct.unpack(">bI", value[:5])
    assert magic == 0, "not the Avro wire format"
    parsed = parse_schema(schema)
    document = schemaless_reader(io.BytesIO(value[5:]), parsed, parsed)
    return schema_id, json.loads(json.dumps(document, default=str))


def _customer(stack: Stack, user_id: str) -> dict[str, Any] | None:
    rows = stack.sql(
        "SELECT id::text, customer_number, first_name, last_name, email, registered_at FROM customers"
        " WHERE user_id = %s",
        (user_id,),
    )
    if not rows:
        return None
    names = ["id", "number", "first_name", "last_name", "email", "registered_at"]
    return dict(zip(names, rows[0], strict=True))


def _published(stack: Stack, since: dict[int, int], event_ids: set[str], timeout: float = 30) -> dict[str, Any]:
    """{input eventId: (raw value, decoded CustomerRegistered)} for the records caused by ``event_ids``."""
    found: dict[str, tuple[bytes, dict[str, Any]]] = {}
    seen: set[tuple[int, int]] = set()

    def until(records: list[Any]) -> bool:
        fresh = [record for record in records if (record.partition, record.offset) not in seen]
        seen.update((record.partition, record.offset) for record in fresh)
        if fresh:
            for record, decoded in zip(fresh, stack.decode([r.value for r in fresh]), strict=True):
                if decoded.get("causationId") in event_ids:
                    found[decoded["causationId"]] = (record.value, decoded)
        return event_ids <= set(found)

    stack.read_since(CUSTOMER_EVENTS, since, until, timeout=timeout)
    return found


def _dead_letters(stack: Stack, since: dict[int, int], keys: set[bytes], timeout: float = 60) -> dict[bytes, Any]:
    found: dict[bytes, list[Any]] = {}

    def until(records: list[Any]) -> bool:
        found.clear()
        for record in records:
            if record.key in keys:
                found.setdefault(record.key, []).append(record)
        return keys <= set(found)

    stack.read_since(DLQ, since, until, timeout=timeout)
    return found


def _headers(record: Any) -> dict[str, str]:
    return {name: value.decode() for name, value in record.headers}


def _assert_story_shape(published: dict[str, Any], event: dict[str, Any], row: dict[str, Any]) -> None:
    """Field for field as the story's example: same keys; fixed values; the rest from the input and the row."""
    assert list(published) == list(STORY)
    assert list(published["payload"]) == list(STORY["payload"])
    for name in ("eventType", "eventVersion", "aggregateType"):
        assert published[name] == STORY[name]
    for name in ("status", "type"):
        assert published["payload"][name] == STORY["payload"][name]
    payload = event["payload"]
    assert published["causationId"] == event["eventId"]
    assert published["correlationId"] == (event.get("correlationId") or event["eventId"])
    assert published["aggregateId"] == published["payload"]["customerId"] == row["id"]
    assert uuid.UUID(published["eventId"]) != uuid.UUID(event["eventId"])
    assert published["payload"]["userId"] == payload["userId"]
    assert published["payload"]["customerNumber"] == row["number"]
    assert re.fullmatch(r"ACME-\d{6}-\d{6,}", row["number"])
    for name in ("email", "firstName", "lastName"):
        assert published["payload"][name] == payload[name]
    # RFC 3339 in UTC with a Z, taken when the customer was registered (after the event it answers)
    assert published["timestamp"].endswith("Z")
    assert parse_rfc3339(published["timestamp"]) >= parse_rfc3339(event["timestamp"])
    expected_registered_at = payload.get("registeredAt") or event["timestamp"]
    assert parse_rfc3339(published["payload"]["registeredAt"]) == parse_rfc3339(expected_registered_at)
    assert row["registered_at"] == parse_rfc3339(expected_registered_at)


@pytest.fixture(scope="module", autouse=True)
def _scratch_subjects_removed(stack: Stack) -> Iterator[None]:
    """This run's scratch subjects are deleted (permanently) when the module is done."""
    yield
    registry = stack.env["SCHEMA_REGISTRY_URL"]
    with httpx.Client(timeout=10) as http:
        for subject in http.get(f"{registry}/subjects", params={"deleted": "true"}).json():
            if subject.startswith(f"test.{RUN}."):
                # soft first: the API refuses a permanent delete before it
                http.delete(f"{registry}/subjects/{subject}")
                http.delete(f"{registry}/subjects/{subject}", params={"permanent": "true"})


# -- Avro and JSON in, Avro out -----------------------------------------------------------------


@pytest.mark.parametrize("input_format", ["avro", "json"])
def test_a_user_registered_becomes_a_customer_and_an_avro_customer_registered_shaped_as_the_story(
    stack: Stack, worker: Worker, input_format: str
) -> None:
    since = stack.end_offsets(CUSTOMER_EVENTS)
    event = user_registered(registered_at="2026-01-02T10:30:02Z", marketing_opt_in=True)
    user_id = event["payload"]["userId"]
    if input_format == "avro":
        value = _avro(stack, USER_SUBJECT, load_schema(USER_REGISTERED), event)
        assert value[0] == 0
    else:
        value = json.dumps(event).encode()
    stack.produce([(user_id.encode(), value)])

    row = wait_for(lambda: _customer(stack, user_id), 20, "the customer row")
    raw, published = _published(stack, since, {event["eventId"]})[event["eventId"]]

    # Avro in the Confluent wire format, under the id registered for customer.events-value
    assert raw[0] == 0
    assert int.from_bytes(raw[1:5], "big") == _registered_id(stack, CUSTOMER_SUBJECT, load_schema(CUSTOMER_REGISTERED))
    _assert_story_shape(published, event, row)
    assert published["payload"]["registeredAt"] == STORY["payload"]["registeredAt"]
    # what was published is what the event store holds for this customer
    (stored,) = stack.sql("SELECT envelope FROM event_store WHERE aggregate_id = %s", (row["id"],))
    assert stored[0] == published


def test_a_v2_writer_with_an_extra_defaulted_field_is_processed(stack: Stack, worker: Worker) -> None:
    since = stack.end_offsets(CUSTOMER_EVENTS)
    v2 = _with_payload_field(
        load_schema(USER_REGISTERED), {"name": "referralCode", "type": ["null", "string"], "default": None}
    )
    event = user_registered(first_name="Vera", last_name="Two")
    event["payload"]["referralCode"] = "FRIEND-42"
    value = _avro(stack, _scratch_subject(), v2, event)
    user_id = event["payload"]["userId"]
    stack.produce([(user_id.encode(), value)])

    row = wait_for(lambda: _customer(stack, user_id), 20, "the customer row of the v2 event")
    raw, published = _published(stack, since, {event["eventId"]})[event["eventId"]]
    assert (row["first_name"], row["last_name"], row["email"]) == ("Vera", "Two", event["payload"]["email"])
    assert raw[0] == 0
    _assert_story_shape(published, event, row)
    assert "referralCode" not in published["payload"]


def test_an_older_writer_without_registered_at_is_processed_with_the_envelope_timestamp(
    stack: Stack, worker: Worker
) -> None:
    since = stack.end_offsets(CUSTOMER_EVENTS)
    older = _without_payload_field(load_schema(USER_REGISTERED), "registeredAt")
    event = user_registered(first_name="Olga", last_name="Older")
    assert "registeredAt" not in event["payload"]
    value = _avro(stack, _scratch_subject(), older, event)
    user_id = event["payload"]["userId"]
    stack.produce([(user_id.encode(), value)])

    row = wait_for(lambda: _customer(stack, user_id), 20, "the customer row of the older writer's event")
    assert row["registered_at"] == parse_rfc3339(event["timestamp"])
    _, published = _published(stack, since, {event["eventId"]})[event["eventId"]]
    _assert_story_shape(published, event, row)


# -- bad Avro to the DLQ ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_avro(stack: Stack, worker: Worker) -> dict[str, Any]:
    """Four bad Avro records produced once; what the DLQ holds for each, and what was expected."""
    v1 = load_schema(USER_REGISTERED)
    valid = user_registered()
    good = _avro(stack, USER_SUBJECT, v1, valid)
    user_schema_id = int.from_bytes(good[1:5], "big")
    unknown = 2**31 - 1 - uuid.uuid4().int % 2**20
    story = copy.deepcopy(STORY)
    story["eventId"], story["causationId"] = str(uuid.uuid4()), str(uuid.uuid4())
    story["payload"]["userId"] = str(uuid.uuid4())
    customer_schema = load_schema(CUSTOMER_REGISTERED)
    customer_id = _registered_id(stack, CUSTOMER_SUBJECT, customer_schema)
    records = {
        "truncated": (
            good[: 5 + (len(good) - 5) // 2],
            f"value: truncated or corrupt Avro (schema id {user_schema_id})",
        ),
        "unknown-schema-id": (struct.pack(">bI", 0, unknown) + good[5:], f"value: unknown schema id {unknown}"),
        "magic-byte-1": (b"\x01" + good[1:], "value: not Avro or JSON"),
        "wrong-record-type": (
            _wire(customer_id, customer_schema, story),
            f"value: schema id {customer_id} cannot be read as com.acme.identity.UserRegistered",
        ),
    }
    keys = {kind: f"bad-avro-{kind}-{RUN}".encode() for kind in records}
    since = stack.end_offsets(DLQ)
    marker = user_registered()  # a valid record after them: the worker went past them
    stack.produce([(keys[kind], value) for kind, (value, _) in records.items()])
    stack.produce([(marker["payload"]["userId"].encode(), json.dumps(marker).encode())])
    dead = _dead_letters(stack, since, set(keys.values()))
    wait_for(lambda: _customer(stack, marker["payload"]["userId"]), 30, "the marker's customer")
    return {"records": records, "keys": keys, "dead": dead, "story_user": story["payload"]["userId"]}


@pytest.mark.parametrize("kind", ["truncated", "unknown-schema-id", "magic-byte-1", "wrong-record-type"])
def test_bad_avro_lands_in_the_dlq_unchanged_with_its_reason(bad_avro: dict[str, Any], kind: str) -> None:
    value, reason = bad_avro["records"][kind]
    (record,) = bad_avro["dead"][bad_avro["keys"][kind]]
    assert record.value == value, "the original bytes, unchanged"
    headers = _headers(record)
    assert headers["x-error-class"] == "InvalidEvent"
    assert headers["x-error-message"] == reason
    assert headers["x-attempts"] == "1"
    assert headers["x-original-topic"] == USER_EVENTS


def test_a_customer_registered_on_the_identity_topic_creates_no_customer(
    stack: Stack, bad_avro: dict[str, Any]
) -> None:
    assert _customer(stack, bad_avro["story_user"]) is None


# -- the registry unreachable at start ----------------------------------------------------------


def _start_failure(stack: Stack, tmp_path: Path, registry_url: str) -> tuple[int, str]:
    """Exit code and log of a worker started with ``registry_url`` (it must exit within 60 s)."""
    log = tmp_path / "worker.log"
    worker = Worker(env={**stack.env, "SCHEMA_REGISTRY_URL": registry_url, "EVENT_FORMAT": "avro"}, log_path=log)
    worker.start()
    assert worker.process is not None
    try:
        code = worker.process.wait(timeout=60)
    finally:
        if worker.process.poll() is None:
            worker.stop()
    return code, log.read_text()


def _assert_one_clear_line(code: int, text: str) -> None:
    assert code != 0
    lines = [line for line in text.splitlines() if "cannot start" in line]
    assert len(lines) == 1, text[-3000:]
    assert re.search(r"acme-customer: cannot start: schema registry\b", lines[0]), lines[0]
    assert "Traceback" not in text, text[-3000:]


def test_a_worker_whose_registry_is_unreachable_exits_at_start_with_one_clear_line(
    stack: Stack, tmp_path: Path
) -> None:
    code, text = _start_failure(stack, tmp_path, f"http://127.0.0.1:{free_port()}/apis/ccompat/v7")

    _assert_one_clear_line(code, text)
    assert "schema registry at http://127.0.0.1:" in text and "failed at start (5 attempts): ConnectError" in text


def test_a_worker_whose_registry_answers_an_error_page_exits_at_start_with_one_clear_line(
    stack: Stack, tmp_path: Path
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), ErrorPage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        code, text = _start_failure(stack, tmp_path, f"http://127.0.0.1:{server.server_address[1]}/apis/ccompat/v7")
    finally:
        server.shutdown()
        server.server_close()

    _assert_one_clear_line(code, text)
    # the registry's own answer (here a proxy's error page), not only the client's complaint
    assert "(5 attempts): HTTP 503, not JSON: <html><body><h1>503 Service Unavailable</h1></body></html>" in text


# -- the registry down while warm (stops the shared registry; keep this test last) --------------


def _devstack(action: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "devstack", action, "registry"], capture_output=True, text=True, timeout=timeout, check=False
    )


def _registry_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/subjects", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def test_a_warm_worker_keeps_processing_known_schema_ids_while_the_registry_is_down(
    stack: Stack, worker: Worker
) -> None:
    registry = stack.env["SCHEMA_REGISTRY_URL"]
    assert _devstack("status").returncode == 0, "the registry must be up to begin with"
    v1 = load_schema(USER_REGISTERED)
    customer_schema = load_schema(CUSTOMER_REGISTERED)
    customer_id = _registered_id(stack, CUSTOMER_SUBJECT, customer_schema)
    # warm: the worker decodes one Avro UserRegistered with the v1 id
    warm = user_registered(first_name="Warm")
    warm_value = _avro(stack, USER_SUBJECT, v1, warm)
    known_id = int.from_bytes(warm_value[1:5], "big")
    stack.produce([(warm["payload"]["userId"].encode(), warm_value)])
    wait_for(lambda: _customer(stack, warm["payload"]["userId"]), 20, "the warm-up customer")
    # an id the worker has never seen (registered now, used only while the registry is down)
    unseen_schema = copy.deepcopy(v1)
    unseen_schema["doc"] = f"unseen {RUN}"
    unseen_event = user_registered(first_name="Unseen")
    unseen_value = _avro(stack, _scratch_subject(), unseen_schema, unseen_event)
    unseen_id = int.from_bytes(unseen_value[1:5], "big")
    assert unseen_id != known_id

    event = user_registered(first_name="Down", registered_at="2026-01-02T10:30:02Z")
    out_since = stack.end_offsets(CUSTOMER_EVENTS)
    dlq_since = stack.end_offsets(DLQ)
    stopped = _devstack("stop")
    try:
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert not _registry_answers(registry), "the registry still answers"

        stack.produce([(event["payload"]["userId"].encode(), _wire(known_id, v1, event))])
        row = wait_for(
            lambda: _customer(stack, event["payload"]["userId"]), 20, "the customer while the registry is down"
        )

        # published as Avro with the cached id, decodable with the schema alone
        def mine(records: list[Any]) -> list[Any]:
            ours = [r for r in records if r.value[:5] == struct.pack(">bI", 0, customer_id)]
            return [r for r in ours if _unwire(r.value, customer_schema)[1]["causationId"] == event["eventId"]]

        (out,) = mine(stack.read_since(CUSTOMER_EVENTS, out_since, lambda found: bool(mine(found))))
        schema_id, published = _unwire(out.value, customer_schema)
        assert schema_id == customer_id
        _assert_story_shape(published, event, row)
        # the projector decodes it from the cache too
        wait_for(lambda: stack.mongo().find_one({"userId": event["payload"]["userId"]}), 20, "the read-model document")

        # an id never seen cannot be resolved now: transient, retried, then dead-lettered as such
        key = f"unseen-{RUN}".encode()
        stack.produce([(key, unseen_value)])
        (dead,) = _dead_letters(stack, dlq_since, {key})[key]
        headers = _headers(dead)
        assert headers["x-error-class"] == "RegistryUnavailable"
        assert headers["x-error-message"].startswith("schema registry")
        assert int(headers["x-attempts"]) > 1
        assert _customer(stack, unseen_event["payload"]["userId"]) is None
    finally:
        started = _devstack("start")
        wait_for(lambda: _devstack("status").returncode == 0, 180, "the registry to be up again", interval=1)
    assert started.returncode == 0, started.stdout + started.stderr
    assert _registry_answers(registry)
    assert _registered_id(stack, CUSTOMER_SUBJECT, customer_schema) == customer_id, "the registry kept its schemas"
