"""The CI check that keeps avro/*.avsc BACKWARD compatible with their committed history."""

from __future__ import annotations

import copy
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from acme_customer.adapters.schemas import CUSTOMER_REGISTERED, USER_REGISTERED, backward_problems, load_schema

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def _with_payload_field(schema: dict[str, Any], field: dict[str, Any]) -> dict[str, Any]:
    changed = copy.deepcopy(schema)
    payload = next(f for f in changed["fields"] if f["name"] == "payload")
    payload["type"]["fields"].append(field)
    return changed


def _without_payload_field(schema: dict[str, Any], name: str) -> dict[str, Any]:
    changed = copy.deepcopy(schema)
    payload = next(f for f in changed["fields"] if f["name"] == "payload")
    payload["type"]["fields"] = [f for f in payload["type"]["fields"] if f["name"] != name]
    return changed


async def test_a_field_added_with_a_default_is_backward_compatible(registry_url: str) -> None:
    v1 = load_schema(USER_REGISTERED)
    v2 = _with_payload_field(v1, {"name": "referralCode", "type": ["null", "string"], "default": None})

    assert await backward_problems(registry_url, "UserRegistered", [v1], v2) is None


async def test_a_field_added_without_a_default_fails_the_check_naming_the_version(registry_url: str) -> None:
    v1 = load_schema(USER_REGISTERED)
    v2 = _with_payload_field(v1, {"name": "referralCode", "type": ["null", "string"], "default": None})
    v3 = _with_payload_field(v1, {"name": "tenant", "type": "string"})

    problem = await backward_problems(registry_url, "UserRegistered", [v1, v2], v3)

    assert problem == "UserRegistered: not BACKWARD compatible with committed version 1 of 2"


async def test_removing_a_field_with_a_default_is_backward_compatible_and_without_one_is_not(
    registry_url: str,
) -> None:
    v1 = load_schema(CUSTOMER_REGISTERED)
    with_optional = _with_payload_field(v1, {"name": "segment", "type": ["null", "string"], "default": None})

    # BACKWARD: the new schema reads old data; a removed field is simply skipped
    assert await backward_problems(registry_url, "CustomerRegistered", [with_optional], v1) is None
    # a reader that gains a field without a default cannot read the old data
    required = _with_payload_field(v1, {"name": "segment", "type": "string"})
    assert await backward_problems(registry_url, "CustomerRegistered", [v1], required) == (
        "CustomerRegistered: not BACKWARD compatible with committed version 1 of 1"
    )


async def test_no_history_means_nothing_to_check(registry_url: str) -> None:
    assert await backward_problems(registry_url, "X", [], load_schema(USER_REGISTERED)) is None


def test_the_cli_check_passes_on_the_committed_schemas(registry_url: str) -> None:
    result = subprocess.run(
        [str(REPO / ".venv" / "bin" / "acme-customer"), "schemas", "check"],
        env={**os.environ, "SCHEMA_REGISTRY_URL": registry_url},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "com.acme.identity.UserRegistered.avsc: BACKWARD compatible" in result.stdout
    assert "com.acme.customer.CustomerRegistered.avsc: BACKWARD compatible" in result.stdout
