"""The worker starts against the stack, joins the customer-service group and stops on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from tests.e2e.conftest import REPO, Stack, Worker, as_record, http_json, user_registered

pytestmark = pytest.mark.e2e


def _group_state(bootstrap: str) -> tuple[str, int]:
    """(state, member count) of the customer-service group, from the broker's DescribeGroups."""

    async def describe() -> tuple[str, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            (response,) = await admin.describe_consumer_groups(["customer-service"])
            (group,) = response.groups
            _error, _name, state, _protocol_type, _protocol, members = group[:6]
            return state, len(members)
        finally:
            await admin.close()

    return asyncio.run(describe())


def test_worker_joins_the_group_serves_health_and_stops_cleanly_on_sigterm(stack: Stack) -> None:
    log = Path(os.environ.get("DEVSTACK_DIR", REPO / ".devstack")) / "logs" / "e2e-lifecycle-worker.log"
    log_start = log.stat().st_size if log.exists() else 0
    worker = Worker(env=stack.env, log_path=log).start()  # stack.env: no API_TOKENS, no API_TOKENS_FILE
    try:
        ready = worker.wait_ready()
        assert ready["checks"] == {"postgresql": "UP", "mongodb": "UP", "kafka": "UP"}
        state, members = _group_state(stack.bootstrap)
        assert state == "Stable"
        assert members >= 1
        assert http_json(f"{worker.url}/health") == (200, {"status": "UP"})
        # without a token configured the read API is disabled, never open
        disabled = (503, {"error": "read API disabled: set API_TOKENS or API_TOKENS_FILE"})
        for route in (f"/api/v1/customers/{uuid.uuid4()}", "/api/v1/customers?customerNumber=ACME-202601-000001"):
            assert http_json(f"{worker.url}{route}") == disabled
            assert http_json(f"{worker.url}{route}", "any-token-0123456789abcdef") == disabled
    finally:
        exit_code = worker.stop(timeout=30)
    assert exit_code == 0
    with log.open("rb") as lines:
        lines.seek(log_start)
        warnings = [line for line in lines.read().decode(errors="replace").splitlines() if "read API" in line]
    assert len(warnings) == 1
    assert warnings[0].endswith("[WARNING] acme_customer.app: read API disabled: set API_TOKENS or API_TOKENS_FILE")


def test_a_malformed_setting_stops_the_worker_with_one_clear_line(stack: Stack, tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    worker = Worker(env={**stack.env, "DATABASE_URL": "mysql://nope"}, log_path=log).start()
    assert worker.process is not None
    assert worker.process.wait(timeout=60) != 0
    lines = [line for line in log.read_text().splitlines() if "configuration error" in line]
    assert lines == ["acme-customer: configuration error: DATABASE_URL must be a postgresql:// URL"]


def test_event_format_json_keeps_the_service_working_without_a_registry(stack: Stack) -> None:
    """EVENT_FORMAT=json and no SCHEMA_REGISTRY_URL: JSON in, JSON CustomerRegistered out."""
    env = {key: value for key, value in stack.env.items() if key != "SCHEMA_REGISTRY_URL"}
    env["EVENT_FORMAT"] = "json"
    log = Path(os.environ.get("DEVSTACK_DIR", REPO / ".devstack")) / "logs" / "e2e-json-worker.log"
    worker = Worker(env=env, log_path=log).start()
    try:
        worker.wait_ready()
        since = stack.end_offsets("customer.events")
        event = user_registered()
        stack.produce([as_record(event)])

        def mine(records: list[Any]) -> list[dict[str, Any]]:
            values = [json.loads(record.value) for record in records if record.value[:1] == b"{"]
            return [value for value in values if value["causationId"] == event["eventId"]]

        records = stack.read_since("customer.events", since, lambda found: bool(mine(found)))
        (published,) = mine(records)
        assert published["payload"]["userId"] == event["payload"]["userId"]
    finally:
        assert worker.stop(timeout=30) == 0
