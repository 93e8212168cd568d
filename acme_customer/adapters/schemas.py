"""The Avro schemas under version control (``avro/*.avsc``), found wherever they were installed."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from acme_customer.errors import ConfigError

USER_REGISTERED = "com.acme.identity.UserRegistered"
CUSTOMER_REGISTERED = "com.acme.customer.CustomerRegistered"


def schema_dirs() -> list[Path]:
    """$AVRO_SCHEMA_DIR, the repository's ``avro/`` (source checkouts), the installed data files."""
    candidates = [Path(__file__).resolve().parents[2] / "avro", Path(sys.prefix) / "share" / "acme-customer" / "avro"]
    if os.environ.get("AVRO_SCHEMA_DIR"):
        candidates.insert(0, Path(os.environ["AVRO_SCHEMA_DIR"]))
    return candidates


def load_schema(full_name: str) -> dict[str, Any]:
    """The parsed JSON of ``<full_name>.avsc``."""
    for folder in schema_dirs():
        path = folder / f"{full_name}.avsc"
        if path.exists():
            schema: dict[str, Any] = json.loads(path.read_text())
            return schema
    raise ConfigError(f"Avro schema {full_name}.avsc not found in {', '.join(map(str, schema_dirs()))}")


async def backward_problems(
    registry_url: str, name: str, history: list[dict[str, Any]], current: dict[str, Any]
) -> str | None:
    """Why ``current`` cannot read data written with the earlier versions in ``history`` (None if it can).

    The registry decides, as it will in production: the earlier versions go, oldest first, into
    a scratch subject set to BACKWARD_TRANSITIVE, and the current one is tested against them.
    """
    import uuid

    import httpx
    from schema_registry.client import AsyncSchemaRegistryClient
    from schema_registry.client.errors import ClientError

    from acme_customer.adapters.codec import without_credentials
    from acme_customer.errors import RegistryUnavailable

    if not history:
        return None
    client = AsyncSchemaRegistryClient(registry_url)
    subject = f"compat-check-{uuid.uuid4().hex[:12]}-{name}"
    try:
        return await _backward_problem(client, subject, name, history, current)
    except (httpx.HTTPError, ClientError, ValueError) as error:
        raise RegistryUnavailable(
            f"schema registry at {without_credentials(registry_url)} unavailable: {type(error).__name__}"
        ) from error


async def _backward_problem(
    client: Any, subject: str, name: str, history: list[dict[str, Any]], current: dict[str, Any]
) -> str | None:
    from schema_registry.client.schema import AvroSchema

    try:
        await client.update_compatibility("NONE", subject)
        for version in history:
            await client.register(subject, AvroSchema(version))
        await client.update_compatibility("BACKWARD_TRANSITIVE", subject)
        for version_number in range(1, len(history) + 1):
            compatible = await client.test_compatibility(subject, AvroSchema(current), version=version_number)
            if not compatible:
                return f"{name}: not BACKWARD compatible with committed version {version_number} of {len(history)}"
        return None
    finally:
        await client.delete_subject(subject)


async def registry_subjects(registry_url: str) -> list[str]:
    """The subjects the registry holds (``config check --connect``); RegistryUnavailable if it does not answer."""
    import httpx
    from schema_registry.client import AsyncSchemaRegistryClient
    from schema_registry.client.errors import ClientError

    from acme_customer.adapters.codec import without_credentials
    from acme_customer.errors import RegistryUnavailable

    try:
        return list(await AsyncSchemaRegistryClient(registry_url, timeout=httpx.Timeout(5.0)).get_subjects())
    except (httpx.HTTPError, ClientError, ValueError) as error:
        raise RegistryUnavailable(
            f"schema registry at {without_credentials(registry_url)} unavailable: {type(error).__name__}"
        ) from error
