"""The Kafka value codec at the edge: bytes <-> event documents.

Reads both forms the contract allows: the Confluent wire format (magic byte 0, 4-byte
big-endian schema id, Avro binary), decoded into this service's reader schema whatever
compatible writer schema the id names, and plain JSON (first byte ``{``). Writes the
configured ``EVENT_FORMAT``. Registry work is python-schema-registry-client's: schema ids
are cached, so a warm codec never calls the registry per message.
"""

from __future__ import annotations

import json
import struct
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

    async def register(self) -> int:
        """Register this topic's schema (BACKWARD compatibility) and remember its id; fail clearly."""
        assert self.client is not None
        schema = AvroSchema(load_schema(self.schema_name))
        try:
            await self.client.update_compatibility("BACKWARD", self.subject)
            compatible = await self.client.test_compatibility(self.subject, schema)
            if not compatible:
                raise ConfigError(
                    f"the registry refuses {self.schema_name} for {self.subject}: "
                    "not BACKWARD compatible with the registered versions"
                )
            self.schema_id = await self.client.register(self.subject, schema)
        except (httpx.HTTPError, ClientError, ValueError) as error:
            raise RegistryUnavailable(
                f"schema registry at {without_credentials(self.client.url_manager.base_url)} failed at start: "
                f"{type(error).__name__}"
            ) from error
        return self.schema_id

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
