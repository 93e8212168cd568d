"""The Kafka value codec at the edge: bytes <-> event documents.

Reads both forms the contract allows: the Confluent wire format (magic byte 0, 4-byte
big-endian schema id, Avro binary), decoded into this service's reader schema whatever
compatible writer schema the id names, and plain JSON (first byte ``{``). Writes the
configured ``EVENT_FORMAT``. Registry work is python-schema-registry-client's: schema ids
are cached, so a warm codec never calls the registry per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

import httpx
from fastavro.read import SchemaResolutionError
from schema_registry.client import AsyncSchemaRegistryClient
from schema_registry.client.errors import ClientError
from schema_registry.client.schema import AvroSchema
from schema_registry.serializers.errors import SerializerError
from schema_registry.serializers.message_serializer import AsyncAvroMessageSerializer

from acme_customer.adapters.schemas import load_schema
from acme_customer.errors import ConfigError, InvalidEvent, RegistryUnavailable

MAX_VALUE_BYTES = 1024 * 1024
AVRO_MAGIC = 0
JSON = "json"
AVRO = "avro"
# workers started together race to register the schema; the losers look again after these waits
REGISTER_RETRY_DELAYS = (0.25, 0.5, 1.0, 2.0)


def encode_json(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def _check_size(value: bytes | None) -> None:
    if value is None:
        raise InvalidEvent("value: null (a tombstone)")
    if not value:
        raise InvalidEvent("value: empty")
    if len(value) > MAX_VALUE_BYTES:
        raise InvalidEvent(f"value: {len(value)} bytes, more than the {MAX_VALUE_BYTES} this service reads")


def _json(value: bytes) -> Any:
    try:
        return json.loads(value)
    except (UnicodeDecodeError, ValueError):
        raise InvalidEvent("value: not Avro or JSON") from None
    except RecursionError:  # e.g. 100,000 nested arrays: valid JSON, but not an event
        raise InvalidEvent("value: JSON nested too deeply") from None


def without_credentials(url: str) -> str:
    """The URL without its user and password (for messages)."""
    parts = urlsplit(url)
    return urlunsplit(
        parts._replace(netloc=parts.hostname or "" if parts.port is None else f"{parts.hostname}:{parts.port}")
    )


def _plain(value: Any) -> Any:
    """Avro's logical types as the JSON form has them (uuid -> str), recursively."""
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


@dataclass
class TopicCodec:
    """Decoding for one topic (its reader schema) and encoding to it (its writer schema id)."""

    topic: str
    schema_name: str
    client: AsyncSchemaRegistryClient | None
    write_format: str = JSON
    schema_id: int | None = None
    _serializer: AsyncAvroMessageSerializer | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.client is not None:
            # the serializer hands reader_schema to fastavro as it is: it must be the parsed
            # schema, not the AvroSchema wrapper its signature names
            reader = AvroSchema(load_schema(self.schema_name)).schema
            self._serializer = AsyncAvroMessageSerializer(self.client, reader_schema=reader)  # type: ignore[arg-type]
        elif self.write_format == AVRO:
            raise ConfigError("EVENT_FORMAT=avro needs SCHEMA_REGISTRY_URL")

    @property
    def subject(self) -> str:
        return f"{self.topic}-value"  # TopicNameStrategy

    async def register(
        self,
        delays: Sequence[float] = REGISTER_RETRY_DELAYS,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> int:
        """Register this topic's schema (BACKWARD compatibility) and remember its id; fail clearly.

        Safe for workers started together on an empty registry: when one is refused, but what it
        asked for is what the registry now holds (another worker got there first), that is success.
        Any other failure is tried again after each of ``delays``, then reported with the
        registry's own answer.
        """
        assert self.client is not None
        schema = AvroSchema(load_schema(self.schema_name))
        failure: Exception | None = None
        for delay in (*delays, None):
            try:
                self.schema_id = await self._register_once(schema)
                return self.schema_id
            except (httpx.HTTPError, ClientError, ValueError) as error:
                failure = error
            settled = await self._registered_as_asked(schema)
            if settled is not None:
                self.schema_id = settled
                return settled
            if delay is not None:
                await sleep(delay)
        raise RegistryUnavailable(
            f"schema registry at {without_credentials(self.client.url_manager.base_url)} failed at start"
            f" ({len(delays) + 1} attempts): {await self._answer(failure)}"
        )

    async def _answer(self, error: Exception | None) -> str:
        """What the registry answered (status and message), or what kept us from asking it."""
        assert self.client is not None
        if isinstance(error, ClientError):
            status = f"HTTP {error.http_code}: " if error.http_code else ""
            return f"{status}{error.message}"[:500]
        if isinstance(error, ValueError):  # an answer that is not JSON (a proxy's error page): ask once more
            url, method = self.client.url_manager.url_for("get_compatibility", subject=self.subject)
            with contextlib.suppress(httpx.HTTPError):
                response = await self.client.request(url, method=method)
                return f"HTTP {response.status_code}, not JSON: {' '.join(response.text.split())}"[:500]
        return f"{type(error).__name__}: {error}"[:500]

    async def _register_once(self, schema: AvroSchema) -> int:
        assert self.client is not None
        await self.client.update_compatibility("BACKWARD", self.subject)
        if not await self.client.test_compatibility(self.subject, schema):
            raise ConfigError(
                f"the registry refuses {self.schema_name} for {self.subject}: "
                "not BACKWARD compatible with the registered versions"
            )
        return int(await self.client.register(self.subject, schema))

    async def _registered_as_asked(self, schema: AvroSchema) -> int | None:
        """The schema's id when the subject holds it with BACKWARD compatibility; otherwise None."""
        assert self.client is not None
        try:
            version = await self.client.check_version(self.subject, schema)
            compatibility = await self.client.get_compatibility(self.subject)
        except (httpx.HTTPError, ClientError, ValueError):
            return None
        if version is None or version.schema_id is None or str(compatibility).upper() != "BACKWARD":
            return None
        return int(version.schema_id)

    async def decode(self, value: bytes | None) -> Any:
        """The decoded document; InvalidEvent for bad input, RegistryUnavailable when it may work later."""
        _check_size(value)
        assert value is not None
        if value[0] != AVRO_MAGIC:
            return _json(value)
        if self._serializer is None:
            raise InvalidEvent("value: Avro, but no schema registry is configured (SCHEMA_REGISTRY_URL)")
        if len(value) <= 5:
            raise InvalidEvent("value: Avro header without a body")
        (schema_id,) = struct.unpack(">I", value[1:5])
        await self._writer_schema(schema_id)  # fetched once, then cached by the client
        try:
            return _plain(await self._serializer.decode_message(value))
        except SerializerError:
            raise InvalidEvent(f"value: unknown schema id {schema_id}") from None
        except SchemaResolutionError:
            raise InvalidEvent(f"value: schema id {schema_id} cannot be read as {self.schema_name}") from None
        except (EOFError, StopIteration, ValueError, IndexError, UnicodeDecodeError, struct.error):
            raise InvalidEvent(f"value: truncated or corrupt Avro (schema id {schema_id})") from None

    async def _writer_schema(self, schema_id: int) -> None:
        """Make sure the writer schema is known, telling an unknown id from an unreachable registry."""
        assert self.client is not None
        try:
            schema = await self.client.get_by_id(schema_id)
        except (httpx.HTTPError, ClientError, ValueError) as error:
            # ValueError: the client parses the body before the status, so an HTML error page
            # from a proxy or a wrong path surfaces as a JSON decoding error
            raise RegistryUnavailable(f"schema registry: {type(error).__name__} for schema id {schema_id}") from error
        if schema is None:
            raise InvalidEvent(f"value: unknown schema id {schema_id}")

    async def encode(self, document: dict[str, Any]) -> bytes:
        if self.write_format == JSON:
            return encode_json(document)
        assert self._serializer is not None and self.schema_id is not None, "register() first"
        return await self._serializer.encode_record_with_schema_id(self.schema_id, document)
